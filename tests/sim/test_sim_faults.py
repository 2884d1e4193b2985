"""``[[faults]]``: windows of simulated time in which the runtime's fault seam fails L2, and the checks through them."""

from __future__ import annotations

import pytest
from simhelpers import Run, check, failed

from mw.cluster import Cluster
from mw.faults import Fail, injected
from simulations.scenario import ScenarioError, parse_scenario

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
        ([{"kind": "mlt_down", "at_s": 10, "for_s": 5}], {"tier_retry_s": 0}, "not applied by the simulator yet"),
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
