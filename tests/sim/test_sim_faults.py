"""``[[faults]]``: windows of simulated time in which the runtime's fault seam fails L2 or Mlt, or agents crash, and
the checks through them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from simhelpers import Run, check, failed, small

from mw import drive
from mw.cluster import Cluster
from mw.errors import MltUnavailable
from mw.faults import Drop, Fail, injected
from mw.telemetry import process_telemetry
from simulations.backends import Backend
from simulations.fault_windows import stretched
from simulations.report import markdown
from simulations.runner import run_scenario
from simulations.scenario import FaultWindow, ScenarioError, parse_scenario

OUTAGE = {"duration_s": 900.0, "warmup_s": 100.0}
HOT_WRITES = {"write_fraction": 0.05, "write_popularity": "zipf"}


def _outage(simulate: Run, **sections: object) -> dict[str, object]:
    return simulate("redis-outage", run=OUTAGE, **sections)  # type: ignore[no-any-return]


def _windowed(scenario_faults: list[dict[str, object]]) -> object:
    return parse_scenario({"name": "x", "runtime": {"tier_retry_s": 0}, "faults": scenario_faults}, "x.toml")


def test_the_checks_hold_through_a_redis_outage_and_the_hit_ratio_recovers(simulate: Run) -> None:
    """Hot writes during the outage: their old L2 copies are never served after it (the runtime deletes them, and
    ignores them until then), and the reloads they need are not counted as a stampede."""
    result = simulate("redis-outage", run={**OUTAGE, "duration_s": 1800.0}, items=HOT_WRITES)
    assert failed(result) == set()
    cached = result["runs"]["cached"]
    assert result["faults"] == [{"start_s": 1200, "end_s": 1500, "what": "Redis down"}]
    assert cached["faults"]["failed_l2_calls"] > 0 and cached["tier_errors"] > 0
    inside = [r for r in cached["series"] if 1200 < r["t"] <= 1500]
    after = [r for r in cached["series"] if r["t"] > 1560]
    assert inside and all(r["l2"] == 0 for r in inside), "no read is answered by L2 while it is down"
    assert sum(r["load"] for r in inside) > 0, "reads fall back to Mlt"
    assert after and sum(r["l2"] for r in after) > 0, "L2 answers again after the window"
    assert check(result, "no_stale_reads")["passed"] and cached["stale"]["checked"]["item"] > 0


def test_writes_l2_missed_and_then_forgot_fail_no_stale_reads(simulate: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime that drops its copies but forgets what L2 missed leaves the old values there for every reader."""
    monkeypatch.setattr(Cluster, "unreached", lambda self, keys, message, deletes=(): self.drop_local(keys))
    broken = simulate("redis-outage", run={**OUTAGE, "duration_s": 1800.0}, items=HOT_WRITES)
    assert "no_stale_reads" in failed(broken)
    assert broken["runs"]["cached"]["stale"]["stale_beyond_bounds"]["item"] > 0


def test_an_l2_error_the_runtime_lets_through_reaches_the_simulator(simulate: Run) -> None:
    """A failure the runtime does not classify as an L2 fault escapes to the caller: the run stops on it."""

    def odd(point: str, _key: str | None) -> Fail | None:
        return Fail(RuntimeError("an unclassified driver error")) if point == "l2.get" else None

    with injected(odd), pytest.raises(RuntimeError, match="unclassified driver error"):
        _outage(simulate)


@pytest.mark.parametrize(
    ("faults", "runtime", "message"),
    [
        ([{"kind": "l2_down", "at_s": 10, "for_s": 5}], {}, "need [runtime] tier_retry_s = 0"),
        ([{"kind": "l2_gone", "at_s": 10, "for_s": 5}], {"tier_retry_s": 0}, "'l2_gone' is not a fault kind"),
        ([{"kind": "l2_slow", "at_s": 1, "for_s": 5}], {"tier_retry_s": 0}, "'l2_slow' needs delay_ms"),
        ([{"kind": "l2_slow", "at_s": 1, "for_s": 5, "delay_ms": 0}], {"tier_retry_s": 0}, "delay_ms = 0"),
        ([{"kind": "l2_slow", "at_s": 1, "for_s": 5, "delay_ms": "x"}], {"tier_retry_s": 0}, "delay_ms = 'x'"),
        ([{"kind": "l2_down", "at_s": 1, "for_s": 5, "delay_ms": 50}], {"tier_retry_s": 0}, "delay_ms = 50 applies"),
        ([{"kind": "mlt_down", "at_s": 1, "for_s": 5, "agents": 2}], {"tier_retry_s": 0}, "agents = 2 applies"),
        ([{"kind": "agent_crash", "at_s": 1, "for_s": 5, "agents": 0}], {"tier_retry_s": 0}, "agents = 0"),
        ([{"kind": "agent_crash", "at_s": 1, "for_s": 5, "agents": 1.5}], {"tier_retry_s": 0}, "agents = 1.5"),
        ([{"kind": "mlt_down", "at_s": 1, "for_s": 5, "delay": 5}], {"tier_retry_s": 0}, "no setting 'delay'"),
        ([{"kind": "l2_down", "at_s": -1, "for_s": 5}], {"tier_retry_s": 0}, "at_s = -1"),
        ([{"kind": "l2_down", "at_s": 1, "for": 5}], {"tier_retry_s": 0}, "no setting 'for'"),
        ({"kind": "l2_down"}, {"tier_retry_s": 0}, "array of tables"),
    ],
)
def test_bad_fault_windows_are_scenario_errors(faults: object, runtime: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=r"x\.toml") as err:
        parse_scenario({"name": "x", "runtime": runtime, "faults": faults}, "x.toml")
    assert message in str(err.value)


def test_a_retry_window_from_the_environment_is_refused(simulate: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TIER_RETRY_S", "1")
    with pytest.raises(ScenarioError, match="tier_retry_s = 0, the run has 1"):
        _outage(simulate)


# --- mlt_down, l2_slow, agent_crash ------------------------------------------------------------------------------
BASE = {"run": {"duration_s": 300.0, "warmup_s": 60.0}, "tasks": {"create_per_agent_s": 0.01}}
"""redis-outage cut down to 12 agents and 5 simulated minutes, with enough tasks for the running-TTL check."""
CRASHY = {
    "run": {"agents": 16, "duration_s": 200.0, "warmup_s": 60.0},
    "tasks": {"create_per_agent_s": 0.01},
    "mlt": {"dist": "fixed", "median_ms": 2000.0},
    "items": {"catalog": 40, "focus_fraction": 0.0, "reads_per_agent_s": 3.0, "zipf_alpha": 0.5},
}
"""Slow loads (2 s) of a small catalog: a crash at 120 s kills agents in the middle of loads others are waiting for."""
CRASHY_TTLS = {"l1_ttl_s": 3.0, "l2_ttl_s": 10.0}
CRASH = {"kind": "agent_crash", "at_s": 120, "for_s": 30, "agents": 6}


def _faulted(
    faults: list[dict[str, Any]], sections: dict[str, Any], overrides: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    scenario = small("redis-outage", **sections)
    scenario = dataclasses.replace(scenario, faults=tuple(FaultWindow(**f) for f in faults))
    return run_scenario(scenario, Backend("embedded"), overrides=overrides, baseline=False, **kw)


def _in_window(cached: dict[str, Any], start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in cached["series"] if start < r["t"] <= end]


def test_mlt_down_misses_get_mlt_unavailable_hits_are_served_and_loads_resume() -> None:
    result = _faulted([{"kind": "mlt_down", "at_s": 120, "for_s": 60}], BASE)
    assert failed(result) == set()
    assert result["faults"] == [{"start_s": 120, "end_s": 180, "what": "Mlt down"}]
    cached = result["runs"]["cached"]
    errors = cached["caller_errors"]
    assert errors["reads"] > 0 and errors["types"] == {"MltUnavailable": errors["reads"] + errors["writes"]}
    assert errors["not_allowed"] == errors["outside_windows"] == errors["hits"] == 0
    assert errors["by_window"][0]["reads"] == errors["reads"]
    assert cached["faults"]["failed_mlt_calls"] > 0 and cached["loads"]["failed_loads"] > 0
    inside = _in_window(cached, 120, 180)
    assert sum(r["l0"] + r["l1"] + r["l2"] for r in inside) > 0, "hits keep being served from the tiers"
    assert cached["waits"]["longest_s"] >= cached["config"]["mlt_timeout_s"]["value"], "a miss waits Mlt's deadline"
    resumed = cached["faults"]["mlt_resumed"][0]
    assert resumed["loads_after"] > 0 and check(result, "fault_recovery")["exercised"]
    report = markdown(result, dict.fromkeys(("hit_ratio", "mlt_qps", "l0_size", "loads_per_expiry"), "p.png"))
    assert f"- Mlt down, simulated s 120-180: caller errors {errors['reads']} reads" in report


def test_an_mlt_error_taken_for_absent_leaves_negative_markers_and_fails_no_stale_reads() -> None:
    """The defect the runtime's ``fail_load`` avoids: a loader that returns ``None`` when Mlt did not answer. Present
    items are then marked absent, and served as absent for the negative TTL."""
    broken = _faulted(
        [{"kind": "mlt_down", "at_s": 120, "for_s": 60}], {**BASE, "defects": {"absent_on_mlt_error": True}}
    )
    assert "no_stale_reads" in failed(broken)
    stale = broken["runs"]["cached"]["stale"]
    assert stale["stale_beyond_bounds"]["item"] > 0
    assert all(e["returned"] == 0 for e in stale["examples"]), "present items answered as absent"


def test_an_mlt_error_outside_any_window_fails_no_caller_errors() -> None:
    calls = [0]

    def flaky(point: str, _key: str | None) -> Fail | None:
        if point == "mlt.get_item":
            calls[0] += 1
            if calls[0] % 10 == 0:
                return Fail(ConnectionError("flaky (injected)"))
        return None

    with injected(flaky):
        broken = _faulted([], BASE)
    row = check(broken, "no_caller_errors")
    assert not row["passed"] and row["shortfall"].startswith("+")
    errors = broken["runs"]["cached"]["caller_errors"]
    assert errors["outside_windows"] == errors["not_allowed"] > 0 and errors["hits"] == 0


def test_a_hit_that_errors_inside_an_mlt_down_window_fails_no_caller_errors() -> None:
    """Only a miss may fail while Mlt is down: a lookup (here every 20th one, L1 and L2 hits among them) never."""
    calls = [0]

    def lookups(point: str, _key: str | None) -> Fail | None:
        if point == "protocol.lookup":
            calls[0] += 1
            if calls[0] % 20 == 0:
                return Fail(MltUnavailable("a lookup that asked Mlt (injected)"))
        return None

    with injected(lookups):
        broken = _faulted([{"kind": "mlt_down", "at_s": 30, "for_s": 270}], BASE)
    assert not check(broken, "no_caller_errors")["passed"]
    errors = broken["runs"]["cached"]["caller_errors"]
    assert errors["lookups"] == errors["not_allowed"] > 0 and errors["hits"] > 0, "some of them were L1 hits"
    assert errors["by_window"][0]["not_allowed"] > 0, "inside the window as well"


def test_mlt_down_on_real_servers(mw_redis_url: Any, mw_postgres_dsn: str) -> None:
    backend = Backend("redis", str(mw_redis_url), str(mw_postgres_dsn), "test servers")
    scenario = small("redis-outage", run={"agents": 8, "duration_s": 180.0, "warmup_s": 30.0})
    scenario = dataclasses.replace(scenario, faults=(FaultWindow("mlt_down", 60, 40),))
    result = run_scenario(scenario, backend, baseline=False)
    assert failed(result) <= {"running_ttl"}, failed(result)  # too short to cache a running task
    cached = result["runs"]["cached"]
    errors = cached["caller_errors"]
    assert errors["reads"] > 0 and errors["not_allowed"] == 0
    assert cached["faults"]["failed_mlt_calls"] > 0 and cached["faults"]["mlt_resumed"][0]["loads_after"] > 0


@pytest.mark.parametrize(("delay_ms", "fails"), [(50, False), (800, True)])
def test_l2_slow_costs_simulated_time_and_past_the_socket_timeout_degrades(delay_ms: float, fails: bool) -> None:
    result = _faulted([{"kind": "l2_slow", "at_s": 120, "for_s": 60, "delay_ms": delay_ms}], BASE)
    assert failed(result) == set()
    assert result["faults"][0]["what"] == f"Redis slow ({delay_ms} ms)"
    cached = result["runs"]["cached"]
    faults = cached["faults"]
    inside = _in_window(cached, 120, 180)
    if fails:  # 800 ms > MW_REDIS_TIMEOUT_S 0.5: every call times out, as a real one would; L2 answers nothing
        assert faults["failed_l2_calls"] > 0 and faults["slowed_l2_calls"] == 0 and cached["tier_errors"] > 0
        assert all(r["l2"] == 0 for r in inside) and sum(r["load"] for r in inside) > 0
    else:
        assert faults["slowed_l2_calls"] > 0 and faults["failed_l2_calls"] == 0
        assert sum(r["l2"] for r in inside) > 0
    assert cached["waits"]["longest_s"] > 4 * delay_ms / 1000 * (0.5 if fails else 1), "round trips cost time"


@pytest.mark.parametrize(
    "fault",
    [{"kind": "l2_slow", "at_s": 120, "for_s": 60, "delay_ms": 200}, {"kind": "mlt_down", "at_s": 120, "for_s": 60}],
)
def test_l2_slow_and_mlt_down_are_deterministic_per_seed(fault: dict[str, Any]) -> None:
    runs = [_faulted([fault], BASE) for _ in range(2)]
    first, second = (r["runs"]["cached"] for r in runs)
    for key in ("requests", "loads", "caller_errors", "waits", "faults", "stale"):
        assert first[key] == second[key], key


def test_agents_crash_their_leases_expire_and_waiting_readers_take_over() -> None:
    live = process_telemetry.live_count()
    result = _faulted([CRASH], CRASHY, CRASHY_TTLS)
    assert process_telemetry.live_count() == live, "a crashed agent's manager outlived the run (its hot items too)"
    # The hit ratio of this harsh load (2 s loads, a 10 s L2 TTL) sits at the Week 1 target (0.69-0.70 with the nodes
    # as separate processes): not what this test judges.
    assert failed(result) - {"hit_ratio_week1"} == set()
    assert result["faults"][0]["what"] == "6 agents crash"
    cached = result["runs"]["cached"]
    assert cached["agents"] == {"started": 16 + 6, "live_at_end": 16}, "as many joined cold"
    leases = cached["faults"]["crash_leases"]
    assert leases and all(r["expires_at"] == pytest.approx(r["lease_from"] + 10.0) for r in leases)
    assert all(r["taken_over_at"] >= r["expires_at"] for r in leases if r["taken_over_at"] is not None)
    assert sum(r["readers"] for r in leases) > 0 and all(r["readers"] == r["answered"] for r in leases)
    assert cached["loads"]["lost_loads"] == len(leases) and cached["loads"]["stampede_loads"] == 0
    assert cached["waits"]["longest_s"] > 9.0, "a reader waited for the dead holder's lease to expire"


def test_agent_crash_is_deterministic_per_seed() -> None:
    runs = [_faulted([CRASH], CRASHY, CRASHY_TTLS) for _ in range(2)]
    first, second = (r["runs"]["cached"] for r in runs)
    for key in ("requests", "loads", "caller_errors", "waits", "faults", "stale", "agents"):
        assert first[key] == second[key], key


def test_a_lease_outliving_the_load_timeout_strands_the_crashed_agents_readers() -> None:
    """A dead holder's lease longer than MW_LOAD_TIMEOUT_S: its waiters give up with LoadTimeout before it expires."""
    broken = _faulted([CRASH], CRASHY, {**CRASHY_TTLS, "lease_ttl_s": 40.0})
    assert {"no_caller_errors", "fault_recovery"} <= failed(broken)
    assert broken["runs"]["cached"]["caller_errors"]["types"].get("LoadTimeout", 0) > 0
    assert "readers unanswered" in check(broken, "fault_recovery")["shortfall"]


def test_waiters_without_a_deadline_behind_a_dead_holder_fail_no_caller_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime whose waiters ignore MW_LOAD_TIMEOUT_S: behind a crashed agent's 40 s lease they wait past it."""
    begin = drive.begin

    def no_deadline(agent: Any, steps: Any, read: Any) -> Any:
        read.deadline = math.inf
        return begin(agent, steps, read)

    monkeypatch.setattr(drive, "begin", no_deadline)
    broken = _faulted([CRASH], CRASHY, {**CRASHY_TTLS, "lease_ttl_s": 40.0})
    assert "no_caller_hang" in failed(broken)
    assert broken["runs"]["cached"]["waits"]["over_bound"] > 0


def test_more_crashes_than_agents_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match="agent_crash kills 20 agents, the fleet has 12"):
        _faulted([{**CRASH, "agents": 20}], BASE)


@pytest.mark.parametrize(
    "other",
    [
        {"kind": "l2_down", "at_s": 110, "for_s": 30},
        {"kind": "mlt_down", "at_s": 115, "for_s": 30},
        {"kind": "l2_slow", "at_s": 100, "for_s": 40, "delay_ms": 900},
    ],
)
def test_a_crash_inside_another_fault_leaves_every_reader_answered(other: dict[str, Any]) -> None:
    """Loads of 2 s straddle the windows: a lease whose release failed with L2 expires at its simulated PX (not on
    fakeredis's wall clock, which would outlive every waiter); a read that joined a load Mlt failed after the window
    closed gets that load's error, which the window allows."""
    result = _faulted([CRASH, other], CRASHY, CRASHY_TTLS)
    for name in ("no_caller_errors", "no_caller_hang", "fault_recovery", "no_db_stampede", "no_stale_reads"):
        assert check(result, name)["passed"], check(result, name)
    assert result["runs"]["cached"]["faults"]["crash_leases"]


def test_a_held_open_span_stretches_alone() -> None:
    """A failover held open moves its own span: a seam ``l2_slow`` outage starting at the same second keeps its end."""
    spans = [(120.0, 180.0), (120.0, 150.0), (300.0, 360.0)]
    held = stretched(spans, (120.0, 180.0), math.inf)
    assert held == [(120.0, math.inf), (120.0, 150.0), (300.0, 360.0)]
    assert stretched(held, (120.0, math.inf), 211.5) == [(120.0, 211.5), (120.0, 150.0), (300.0, 360.0)]
    assert stretched(spans, (120.0, 170.0), math.inf) == spans  # a span nobody has: nothing moves


@pytest.mark.parametrize(
    ("lost_point", "mix"),
    [
        ("mlt.delete_item.reply", {"get_item_typed": 3.0, "del_global_item_typed": 1.0}),
        ("mlt.put_item.reply", {"get_item_typed": 1.0}),
    ],
)
def test_changes_whose_replies_are_lost_are_settled_by_what_mlt_answers_next(
    simulate: Run, lost_point: str, mix: dict[str, float]
) -> None:
    """The first delete (or write) of each item runs in Mlt but loses its reply: its writer is told it is in doubt.
    The item's next delete finds nothing, or its next write is numbered 1 again (the delete ran), or its next write's
    version is one ahead (the write landed): every doubt ends, and no read the oracle judged against them is beyond
    the bounds. The errors are outside any window, so only ``no_caller_errors`` fails."""
    lost: set[str | None] = set()
    running = [False]

    def lose(point: str, key: str | None) -> Drop | None:
        running[0] = running[0] or point.startswith("protocol.")  # the agents read: Mlt's seeding is over
        if running[0] and point == lost_point and key not in lost:
            lost.add(key)
            return Drop()
        return None

    with injected(lose):
        result = simulate(
            "staging-synthetic",
            items={"catalog": 20, "write_fraction": 0.2, "absent_fraction": 0.0},
            mix=mix,
        )
    doubt = result["runs"]["cached"]["stale"]["in_doubt"]
    assert doubt["writes"] == len(lost) == 20 and doubt["landed"] == 20 and doubt["open"] == 0, doubt
    assert doubt["reads"] > 0  # reads in the meantime were judged within the bounds
    assert failed(result) == {"no_caller_errors"}, failed(result)
