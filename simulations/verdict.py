"""The checklist's targets as pass/fail checks over a run's summary, each saying by how much it missed.

Every check judges what the simulator observed itself (request outcomes, the TTLs it saw applied and served, L0
sizes, the keys it found in L2, the heartbeats it received), never the runtime's own figure for the same thing; the
runtime's counters are judged by ``telemetry_truth`` instead.

| check | checklist line |
|---|---|
| ``hit_ratio_week1`` / ``hit_ratio_week2`` | Success Metrics: hit ratio > 70 % (Week 1), > 80 % (Week 2+) |
| ``running_ttl`` | Task TTLs working: running tasks expire quickly (within ``MW_TASK_TTL_RUNNING_S=30``) |
| ``no_double_prefix`` | No double-prefixing: no ``global:item:global:item`` key in L2 or the logs |
| ``heartbeats`` | Telemetry flowing: every agent's heartbeat carries ``memory_metrics`` |
| ``telemetry_truth`` | Telemetry verification: the heartbeats' and counters' values are what happened |
| ``l0_bounded`` | Memory bounded: L0 never above the scenario's budget (items and bytes) |
| ``no_db_stampede`` | Misses don't cause DB stampedes: at most 1 load per key per expiry |
| ``no_stale_reads`` | Invalidation works: zero stale reads beyond the TTL / invalidation bounds |
| ``no_caller_errors`` | Faults as scenarios: no error outside a fault window; inside ``mlt_down`` only for misses |
| ``no_caller_hang`` | Faults as scenarios: every reader is answered within ``MW_LOAD_TIMEOUT_S`` |
| ``fault_recovery`` | Faults as scenarios: loads resume after ``mlt_down``; a crashed agent's keys are taken over |
| ``prewarm_gain`` | Hot items prewarming (Week 2+): the hot keys' read-path Mlt loads at least 20 % fewer with it |

``prewarm_gain`` is judged when the scenario compares runs with and without prewarming (``[prewarm] compare``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from simulations.scenario import Targets


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    target: str
    observed: str
    passed: bool
    shortfall: str = ""
    """For a failed check: how far from the target (``-0.042``, ``+3 loads``...)."""
    exercised: bool = True
    """``False``: the scenario's workload gives this check nothing to judge (no tasks for ``running_ttl``)."""


@dataclass(frozen=True)
class Verdict:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def _ratio(name: str, title: str, observed: float, target: float) -> Check:
    passed = observed > target
    return Check(
        name, title, f"> {target:.2f}", f"{observed:.4f}", passed, "" if passed else f"{observed - target:+.4f}"
    )


PREWARM_MIN_GAIN = 0.20
"""Prewarming must spare the hot keys at least this share of the Mlt loads readers wait for (issue 10)."""


def judge(
    run: dict[str, Any], targets: Targets, *, tasks: bool = True, prewarm: dict[str, Any] | None = None
) -> Verdict:
    """The verdict of one run; ``tasks``: whether the scenario runs the task workload ``running_ttl`` needs;
    ``prewarm``: the effect of prewarming (``runner.prewarm_effect``), judged when it has the hot keys' figures."""
    ratio = run["hit_ratio"]["observed"]
    checks = [_ratio("hit_ratio_week1", "Hit ratio (Week 1)", ratio, targets.hit_ratio_week1)]
    if targets.hit_ratio_week2 is not None:
        checks.append(_ratio("hit_ratio_week2", "Hit ratio (Week 2+)", ratio, targets.hit_ratio_week2))
    checks.append(_running_ttl(run, targets.running_ttl_max_s, tasks))
    dp = run["double_prefix"]
    seen = dp["l2_keys"] + dp["log_lines"]
    checks.append(
        Check(
            "no_double_prefix",
            "No double-prefixed key (L2, logs)",
            "0 keys, 0 log lines",
            f"{dp['l2_keys']} keys, {dp['log_lines']} log lines ({dp['scans']} L2 scans)",
            seen == 0,
            "" if seen == 0 else f"+{seen}",
        )
    )
    checks.append(_heartbeats(run["heartbeats"]))
    checks.append(_telemetry_truth(run["telemetry_truth"], run["heartbeats"]))
    checks.append(_l0(run["l0"], targets))
    loads = run["loads"]
    worst, limit = loads["max_loads_per_key_per_expiry"], targets.max_loads_per_key_per_expiry
    checks.append(
        Check(
            "no_db_stampede",
            "No DB stampede (loads per key per expiry)",
            f"<= {limit}",
            f"max {worst} (present keys {loads['max_loads_present_keys']}, absent keys "
            f"{loads['max_loads_absent_keys']}; {loads['stampede_loads']} extra loads)",
            worst <= limit,
            "" if worst <= limit else f"+{worst - limit} loads",
        )
    )
    stale = run["stale"]
    n, limit = stale["violations"], targets.max_stale_reads
    checked = sum(stale["checked"].values())
    within = sum(stale["stale_within_bounds"].values())
    checks.append(
        Check(
            "no_stale_reads",
            "No stale reads beyond TTL/invalidation bounds",
            f"<= {limit}",
            f"{n} of {checked} reads judged ({within} stale within the bounds)"
            if checked
            else "not exercised: no read could be judged",
            n <= limit,
            "" if n <= limit else f"+{n - limit} reads",
            exercised=checked > 0,
        )
    )
    checks.append(_caller_errors(run.get("caller_errors")))
    checks.append(_caller_hang(run.get("waits")))
    checks.append(_fault_recovery(run.get("faults") or {}))
    if prewarm is not None and "hot" in prewarm:
        checks.append(_prewarm_gain(prewarm))
    return Verdict(checks)


def _caller_errors(errors: dict[str, Any] | None) -> Check:
    title, target = "No caller error but Mlt's for misses in mlt_down", "0 outside fault windows, 0 of hits"
    if errors is None:
        return Check(
            "no_caller_errors",
            title,
            target,
            "not exercised: this engine does not count them",
            True,
            "",
            exercised=False,
        )
    bad = errors["not_allowed"]
    observed = (
        f"{bad} not allowed of {errors['reads']} read and {errors['writes']} write errors "
        f"({errors['outside_windows']} outside fault windows, {errors['lookups']} lookups, {errors['hits']} hits)"
    )
    return Check("no_caller_errors", title, target, observed, bad == 0, "" if bad == 0 else f"+{bad} errors")


def _caller_hang(waits: dict[str, Any] | None) -> Check:
    title = "No caller hang (every reader answered)"
    if waits is None:
        return Check(
            "no_caller_hang", title, "-", "not exercised: this engine does not time reads", True, "", exercised=False
        )
    late, hung = waits["over_bound"], waits["still_waiting"]
    ok = late == 0 and hung == 0
    observed = f"longest wait {waits['longest_s']:g} s; {late} reads over the bound, {hung} still waiting at the end"
    short = "" if ok else f"+{late + hung} reads"
    return Check("no_caller_hang", title, f"<= {waits['bound_s']:g} s", observed, ok, short)


def _fault_recovery(faults: dict[str, Any]) -> Check:
    title = "Loads resume after mlt_down; crashed agents' keys taken over"
    target = "a load after each mlt_down; every reader of a crashed lease's key answered"
    kinds = set(faults.get("kinds") or ())
    if not kinds & {"mlt_down", "agent_crash"}:
        return Check(
            "fault_recovery", title, target, "not exercised: no mlt_down or agent_crash window", True, exercised=False
        )
    resumed = faults.get("mlt_resumed") or []
    leases = faults.get("crash_leases") or []
    stuck = [w for w in resumed if w["misses_after"] and not w["loads_after"]]
    readers = sum(r["readers"] for r in leases)
    unanswered = readers - sum(r["answered"] for r in leases)
    parts = []
    if "mlt_down" in kinds:
        loads = sum(w["loads_after"] for w in resumed)
        parts.append(f"mlt_down: {loads} loads after {len(resumed)} windows, {len(stuck)} without")
    if "agent_crash" in kinds:
        taken = sum(r["taken_over_at"] is not None for r in leases)
        parts.append(
            f"crashes: {len(leases)} leases left, {taken} keys loaded again, {readers - unanswered} of {readers} "
            "readers answered"
        )
    short = []
    if stuck:
        short.append(f"{len(stuck)} mlt_down windows without a load after")
    if unanswered:
        short.append(f"{unanswered} readers unanswered")
    ok = not short
    return Check("fault_recovery", title, target, "; ".join(parts), ok, ", ".join(short))


def _prewarm_gain(effect: dict[str, Any]) -> Check:
    """The hot keys' Mlt loads on the read path (a reader waited for Mlt) with prewarming against without."""
    with_, without = effect["hot"]["with"], effect["hot"]["without"]
    fewer = effect["hot_read_loads_fewer"]
    n = effect["hot_keys"]["n"]
    observed = (
        f"{with_['read_loads']} vs {without['read_loads']} read-path loads of the {n} hot keys"
        + (f" ({fewer:.1%} fewer)" if fewer is not None else "")
        + f"; prewarm loaded them {with_['prewarm_loads']} times; hot-key hit ratio {with_['hit_ratio']:.4f} vs "
        f"{without['hit_ratio']:.4f}"
    )
    passed = fewer is not None and fewer >= PREWARM_MIN_GAIN
    if fewer is None:
        short = "n/a: no read-path load of a hot key to spare"
    else:
        short = "" if passed else f"{fewer - PREWARM_MIN_GAIN:+.1%}"
    return Check(
        "prewarm_gain",
        "Prewarming spares hot keys' read-path loads",
        f">= {PREWARM_MIN_GAIN:.0%} fewer than without",
        observed,
        passed,
        short,
    )


def _telemetry_truth(truth: dict[str, Any], hb: dict[str, Any]) -> Check:
    ratio = truth["hit_ratio"]
    off = abs(ratio["difference"]) > ratio["tolerance"]
    counters = truth["mismatched_counters"]
    untrue = hb["untrue"]
    passed = not off and not counters and not untrue
    short = []
    if off:
        short.append(f"hit ratio {ratio['difference']:+.4f}")
    if counters:
        short.append("counters " + ", ".join(counters))
    if untrue:
        short.append(f"{untrue} heartbeats")
    return Check(
        "telemetry_truth",
        "Telemetry tells the truth (counters, heartbeat values)",
        f"hit ratio within {ratio['tolerance']:g}, every count equal",
        f"runtime {ratio['runtime']:.4f} vs observed {ratio['observed']:.4f}; "
        f"{len(counters)} counters and {untrue} of {hb['sent']} heartbeats disagree",
        passed,
        "; ".join(short),
    )


def _running_ttl(run: dict[str, Any], limit: float, tasks: bool) -> Check:
    running = run["task_ttls"].get("running")
    if not running or not running["cached"]:
        return Check(
            "running_ttl",
            "Running tasks expire within their TTL",
            f"<= {limit:g} s",
            "no running task was cached" if tasks else "not exercised: the scenario runs no tasks",
            not tasks,
            "n/a" if tasks else "",
            exercised=tasks,
        )
    no_expiry = running["l2_without_expiry"]
    worst = max(running["max_ttl_applied_s"], running["max_remaining_when_served_s"], running["max_l2_life_s"])
    passed = worst <= limit and not no_expiry
    l2 = f"{no_expiry} L2 copies without expiry" if no_expiry else f"L2 life {running['max_l2_life_s']:g}"
    observed = (
        f"max {worst:.3f} s over {running['cached']} cachings "
        f"(applied {running['max_ttl_applied_s']:g}, served {running['max_remaining_when_served_s']:g}, {l2})"
    )
    return Check(
        "running_ttl",
        "Running tasks expire within their TTL",
        f"<= {limit:g} s",
        observed,
        passed,
        "" if passed else ("no expiry" if no_expiry else f"+{worst - limit:.3f} s"),
    )


def _heartbeats(hb: dict[str, Any]) -> Check:
    ok = hb["sent"] > 0 and hb["missing"] == 0 and hb["invalid"] == 0
    observed = f"{hb['sent']} sent of {hb['expected']} expected, {hb['invalid']} invalid"
    short = "" if ok else f"{hb['missing']} missing, {hb['invalid']} invalid"
    return Check(
        "heartbeats", "Heartbeats carry memory_metrics", "every interval, every checklist field", observed, ok, short
    )


def _l0(l0: dict[str, Any], targets: Targets) -> Check:
    over_items = l0["max_items"] - targets.l0_max_items
    over_bytes = l0["max_bytes"] - targets.l0_max_bytes
    ok = over_items <= 0 and over_bytes <= 0
    short = []
    if over_items > 0:
        short.append(f"+{over_items} items")
    if over_bytes > 0:
        short.append(f"+{over_bytes} bytes")
    return Check(
        "l0_bounded",
        "L0 bounded (items, bytes per agent)",
        f"<= {targets.l0_max_items} items, <= {targets.l0_max_bytes} bytes",
        f"max {l0['max_items']} items, {l0['max_bytes']} bytes",
        ok,
        ", ".join(short),
    )
