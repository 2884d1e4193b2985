"""The runtime's counters against the simulator's own counts: does the telemetry tell the truth?

Every check of the verdict is judged on what the simulator saw; the runtime's counters are a second column that must
agree with it. :data:`COUNTER_MAP` is the table (docs/simulator.md prints it): each runtime counter and the
observation it must equal, agent by agent, over each agent's whole life. The hit ratio is compared over the measured
window, within :data:`simulations.measure.RATIO_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from simulations.measure import MAX_EXAMPLES, RATIO_TOLERANCE, Seen, observed_hit_ratio

COUNTER_MAP: dict[str, tuple[str, ...]] = {
    "l0_hits": ("l0",),
    "l1_hits": ("l1",),
    "l2_hits": ("l2",),
    "misses": ("missed",),
    "negative_cache_hits": ("negative",),
    "task_cache_hits": ("task_hits",),
    "task_cache_misses": ("task_misses",),
    "task_evictions": ("task_evictions",),
    "early_refreshes": ("refreshes",),
}
"""Runtime counter -> the observations (fields of :class:`simulations.measure.Seen`) whose sum it must equal."""


class Observed(Protocol):
    """An agent as the summary sees it: its name, the runtime's counters and the simulator's own counts."""

    name: str
    seen: Seen

    @property
    def manager(self) -> Any: ...


def compare(agents: Iterable[Observed], window_seen: dict[str, int], window_runtime: dict[str, int]) -> dict[str, Any]:
    """Per counter: the runtime's total, the observed total and how many agents disagree; and the two hit ratios.

    ``window_seen`` holds the observed outcomes over the measured window, ``window_runtime`` the runtime's tier
    counters over the same window (both as :mod:`simulations.series` deltas).
    """
    rows = {name: {"runtime": 0, "observed": 0, "agents_disagreeing": 0} for name in COUNTER_MAP}
    examples: list[dict[str, Any]] = []
    for agent in agents:
        telemetry, seen = agent.manager.telemetry, agent.seen
        for name, fields in COUNTER_MAP.items():
            reported = int(getattr(telemetry, name))
            observed = sum(getattr(seen, f) for f in fields)
            row = rows[name]
            row["runtime"] += reported
            row["observed"] += observed
            if reported != observed:
                row["agents_disagreeing"] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append({"agent": agent.name, "counter": name, "runtime": reported, "observed": observed})
    runtime_hits = window_runtime["l0_hits"] + window_runtime["l1_hits"] + window_runtime["l2_hits"]
    runtime_total = runtime_hits + window_runtime["misses"]
    runtime_ratio = runtime_hits / runtime_total if runtime_total else 0.0
    observed_ratio = observed_hit_ratio(window_seen)
    return {
        "counters": rows,
        "mismatched_counters": sorted(n for n, r in rows.items() if r["agents_disagreeing"]),
        "examples": examples,
        "hit_ratio": {
            "runtime": round(runtime_ratio, 6),
            "observed": round(observed_ratio, 6),
            "difference": round(runtime_ratio - observed_ratio, 6),
            "tolerance": RATIO_TOLERANCE,
        },
    }
