"""Measure, don't ask: every check judges what the simulator saw, so a runtime that lies about itself is caught.

Each test breaks the runtime (never the check) and sees exactly the check that guards against that break fail, while
the checks judged on the simulator's own observations keep their values.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from simhelpers import Run, check, failed

from mw import MwManager
from mw import telemetry as T
from mw.agent_tiers import AgentTiers
from simulations.scenario import ScenarioError, Targets, parse_scenario


def test_a_runtime_that_stops_counting_misses_fails_telemetry_truth_not_the_hit_ratio(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    intact = simulate("staging-synthetic")
    monkeypatch.setattr(AgentTiers, "missed", lambda self, key: None)
    broken = simulate("staging-synthetic")
    assert failed(broken) == {"telemetry_truth"}
    runs = intact["runs"]["cached"], broken["runs"]["cached"]
    assert runs[1]["hit_ratio"]["mw_hit_ratio"] == 1.0, "the runtime now claims every read hit"
    assert runs[0]["hit_ratio"]["observed"] == runs[1]["hit_ratio"]["observed"] < 1.0
    assert check(intact, "hit_ratio_week1")["observed"] == check(broken, "hit_ratio_week1")["observed"]
    truth = runs[1]["telemetry_truth"]
    assert "misses" in truth["mismatched_counters"] and truth["hit_ratio"]["difference"] > 0.01
    assert "hit ratio +" in check(broken, "telemetry_truth")["shortfall"]


def test_a_runtime_that_credits_the_wrong_tier_fails_telemetry_truth(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L1 hits counted as L2 hits: the hit ratio is unchanged, the per-tier counts are not."""
    real = AgentTiers.from_l1

    def from_l1(self: AgentTiers, key: str, data: bytes | None, gen: int) -> Any:
        before = self.telemetry.l1_hits
        value = real(self, key, data, gen)
        if self.telemetry.l1_hits != before:
            self.telemetry.l1_hits, self.telemetry.l2_hits = before, self.telemetry.l2_hits + 1
        return value

    monkeypatch.setattr(AgentTiers, "from_l1", from_l1)
    broken = simulate("staging-synthetic")
    assert failed(broken) == {"telemetry_truth"}
    truth = broken["runs"]["cached"]["telemetry_truth"]
    assert truth["mismatched_counters"] == ["l1_hits", "l2_hits"]
    assert truth["hit_ratio"]["difference"] == 0.0
    assert broken["runs"]["cached"]["heartbeats"]["untrue"] > 0


def test_heartbeat_values_that_lie_fail_telemetry_truth(simulate: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    real = MwManager.memory_metrics

    def inflated(self: MwManager, top_n: int = 10) -> dict[str, Any]:
        metrics = real(self, top_n)
        metrics["mw_task_evictions"] += 1
        return metrics

    monkeypatch.setattr(MwManager, "memory_metrics", inflated)
    broken = simulate("staging-synthetic")
    assert failed(broken) == {"telemetry_truth"}
    hb = broken["runs"]["cached"]["heartbeats"]
    assert hb["untrue"] == hb["sent"] > 0
    assert "mw_task_evictions" in hb["untrue_examples"][0]["reported_vs_seen"]
    assert broken["runs"]["cached"]["telemetry_truth"]["mismatched_counters"] == []


def test_a_field_dropped_from_the_runtime_and_its_own_list_fails_heartbeats(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator keeps its own copy of the checklist's fields: losing one on both sides is still caught."""
    real = MwManager.memory_metrics

    def without(self: MwManager, top_n: int = 10) -> dict[str, Any]:
        metrics = real(self, top_n)
        del metrics["mw_task_evictions"]
        return metrics

    monkeypatch.setattr(MwManager, "memory_metrics", without)
    monkeypatch.delitem(T.METRIC_FIELDS, "mw_task_evictions")
    broken = simulate("staging-synthetic")
    assert failed(broken) == {"heartbeats"}
    hb = broken["runs"]["cached"]["heartbeats"]
    assert hb["invalid"] == hb["sent"] and hb["invalid_examples"][0]["problems"] == ["mw_task_evictions"]


def test_a_get_task_policy_that_keeps_running_rows_long_fails_running_ttl(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row's TTL is the runtime's own policy (``begin_task``), seen in the tiers; the simulator computes none."""
    import mw.manager

    monkeypatch.setattr(mw.manager, "cache_ttl_s", lambda row, *_: 600.0 if row.get("status") == "running" else 10.0)
    broken = simulate("task-churn")
    assert failed(broken) == {"running_ttl"}
    row = check(broken, "running_ttl")
    assert row["shortfall"].startswith("+") and "applied 600" in row["observed"]


def test_an_l0_bound_raised_in_the_scenario_fails_its_stated_budget(simulate: Run) -> None:
    """``[runtime] l0_max_items = 1e9`` no longer moves the target: the budget in ``[targets]`` stays 256."""
    wide = {"reads_per_agent_s": 6.0, "focus_fraction": 0.0, "zipf_alpha": 0.9}
    broken = simulate("staging-synthetic", items=wide, runtime={"l0_max_items": 10**9})
    assert failed(broken) == {"l0_bounded"}
    assert broken["runs"]["cached"]["l0"]["max_items"] > 256 == broken["runs"]["cached"]["l0"]["bound_items"]


def test_a_scenario_without_tasks_shows_running_ttl_as_not_exercised(simulate: Run) -> None:
    row = check(simulate("hot-key-herd"), "running_ttl")
    assert row["passed"] and not row["exercised"] and "no tasks" in row["observed"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("hit_ratio_week1", 0.5, "hit_ratio_week1 = 0.5 loosens the checklist's target"),
        ("hit_ratio_week2", 0.75, "at least 0.8"),
        ("running_ttl_max_s", 100, "running_ttl_max_s = 100 loosens"),
        ("l0_max_items", 10**9, "at most 10000"),
        ("max_loads_per_key_per_expiry", 2, "at most 1"),
        ("max_stale_reads", 5, "at most 0"),
        ("max_stale_reads", False, "cannot be turned off"),
        ("heartbeats", False, "cannot be turned off"),
        ("no_double_prefix", False, "cannot be turned off"),
        ("hit_ratio_week1", "high", "is not a number"),
    ],
)
def test_targets_may_only_be_tightened(key: str, value: Any, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape("x.toml: [targets] ")) as err:
        parse_scenario({"name": "x", "targets": {key: value}}, "x.toml")
    assert message in str(err.value)


def test_tightened_targets_are_kept() -> None:
    strict = {"hit_ratio_week1": 0.9, "hit_ratio_week2": 0.95, "running_ttl_max_s": 5, "l0_max_items": 64}
    targets = parse_scenario({"name": "x", "targets": strict}).targets
    assert (targets.hit_ratio_week1, targets.hit_ratio_week2, targets.running_ttl_max_s) == (0.9, 0.95, 5)
    assert targets.l0_max_items == 64 and Targets().hit_ratio_week1 == 0.70


def test_overrides_cannot_loosen_targets_either() -> None:
    scenario = parse_scenario({"name": "x"}, "x.toml")
    with pytest.raises(ScenarioError, match=re.escape("x.toml: [targets] running_ttl_max_s = 60 loosens")):
        scenario.with_overrides(targets={"running_ttl_max_s": 60})


@pytest.mark.parametrize(
    ("variable", "value", "fails"),
    [
        ("MW_STAMPEDE_PROTECTION", "false", "no_db_stampede"),
        ("MW_NEGATIVE_CACHE", "false", "no_db_stampede"),
        ("MW_TASK_TTL_RUNNING_S", "100", "running_ttl"),
        ("MW_L0_MAX_ITEMS", "100000", "l0_bounded"),
        ("MW_PUBSUB", "false", "no_stale_reads"),  # other nodes never hear of a write: their copies live to their TTL
    ],
)
def test_the_runtimes_own_switches_in_the_environment_fail_their_check_on_staging_synthetic(
    simulate: Run, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fails: str
) -> None:
    wide = {"reads_per_agent_s": 6.0, "focus_fraction": 0.0, "zipf_alpha": 0.9}
    items = wide if variable == "MW_L0_MAX_ITEMS" else {}
    run = {"duration_s": 400.0} if variable == "MW_TASK_TTL_RUNNING_S" else {}
    assert failed(simulate("staging-synthetic", items=items, run=run)) == set()
    monkeypatch.setenv(variable, value)
    assert failed(simulate("staging-synthetic", items=items, run=run)) == {fails}


def test_heartbeats_sent_while_reads_wait_on_a_slow_mlt_tell_the_truth(simulate: Run) -> None:
    """The runtime counts a miss when the read begins; so does the simulator, or a heartbeat sent while a read
    waits for a slow load would look like a lie."""
    result = simulate(
        "hot-key-herd",
        run={"agents": 20, "duration_s": 60.0, "warmup_s": 10.0},
        mlt={"median_ms": 3000.0, "p99_ms": 6000.0},
        heartbeat={"every_s": 2.0},
    )
    hb = result["runs"]["cached"]["heartbeats"]
    assert hb["sent"] > 200 and hb["untrue"] == 0, hb["untrue_examples"]
    assert check(result, "telemetry_truth")["passed"]
