"""The time series of a run, sampled every ``sample_s`` of simulated time.

Each sample takes the deltas of the request outcomes, of the runtime's own tier counters (summed over every agent that
ever lived) and of Mlt's query counter, plus the L0 size of every live agent (the bound check) and a scan of L2 for
double-prefixed keys. A snapshot at the end of the warmup is what the measured hit ratios start from.
"""

from __future__ import annotations

from typing import Any

from mw.errors import TierUnavailable
from mw.keys import DOUBLE_PREFIX
from simulations.measure import OUTCOMES
from simulations.model import Model, Process

TIER_COUNTERS = ("l0_hits", "l1_hits", "l2_hits", "misses", "negative_cache_hits", "l2_errors", "mlt_errors")


class Sampler:
    def __init__(self, model: Model, sample_s: float) -> None:
        self.model = model
        self.sample_s = sample_s
        self.rows: list[dict[str, Any]] = []
        self.l0_max_items = 0
        self.l0_max_bytes = 0
        self.warm: dict[str, int] | None = None
        self.start = self._last = self.totals()

    def totals(self) -> dict[str, int]:
        """Cumulative counters now: request outcomes, runtime tier counters, Mlt queries."""
        model = self.model
        out = model.outcomes.as_dict()
        sums = dict.fromkeys(TIER_COUNTERS, 0)
        for agent in model.all_agents():
            t = agent.manager.telemetry
            for name in TIER_COUNTERS:
                sums[name] += getattr(t, name)
        out.update(sums)
        out["mlt_queries"] = model.store.queries
        return out

    def l0_sizes(self) -> tuple[int, int, float]:
        """(max items, max bytes, mean items) over the live agents' L0s."""
        agents = self.model.agents
        if not agents:
            return 0, 0, 0.0
        items = [len(a.manager.l0) for a in agents]
        nbytes = max(a.manager.l0.nbytes for a in agents)
        return max(items), nbytes, sum(items) / len(items)

    def scan_l2(self) -> None:
        model = self.model
        try:
            found = model.admin.l2.scan_keys(f"*{DOUBLE_PREFIX}*")
        except TierUnavailable:  # L2 down (a fault window): this scan could not look
            model.double_prefix.scans_failed += 1
            return
        model.double_prefix.scans += 1
        model.double_prefix.l2_keys.update(found)

    def sample(self) -> dict[str, Any]:
        model = self.model
        now = self.totals()
        delta = {k: now[k] - self._last[k] for k in now}
        self._last = now
        max_items, max_bytes, mean_items = self.l0_sizes()
        self.l0_max_items = max(self.l0_max_items, max_items)
        self.l0_max_bytes = max(self.l0_max_bytes, max_bytes)
        requests = sum(delta[o] for o in OUTCOMES)
        answered = delta["l0"] + delta["l1"] + delta["l2"] + delta["negative"]
        hits = delta["l0_hits"] + delta["l1_hits"] + delta["l2_hits"]
        row: dict[str, Any] = {
            "t": round(model.env.now, 6),
            "agents": len(model.agents),
            "requests": requests,
            **{o: delta[o] for o in OUTCOMES},
            "request_hit_ratio": round(answered / requests, 6) if requests else None,
            "mw_hits": hits,
            "mw_misses": delta["misses"],
            "mw_hit_ratio": round(hits / (hits + delta["misses"]), 6) if hits + delta["misses"] else None,
            "mlt_queries": delta["mlt_queries"],
            "mlt_qps": round(delta["mlt_queries"] / self.sample_s, 4),
            "l0_items_max": max_items,
            "l0_items_mean": round(mean_items, 3),
            "l0_bytes_max": max_bytes,
        }
        self.rows.append(row)
        return row

    def run(self, on_sample: Any = None) -> Process:
        scan = self.model.caching
        while True:
            yield self.model.env.timeout(self.sample_s)
            row = self.sample()
            if scan:
                self.scan_l2()
            if on_sample is not None:
                on_sample(row)

    def mark_warm(self, at: float) -> Process:
        yield self.model.env.timeout(at)
        self.warm = self.totals()
