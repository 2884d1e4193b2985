"""The agents' other paths through the runtime (``[mix]``): batches, reads with a caller TTL, deletes, task status
changes through ``update_task_status``. Each is judged by the stale-read oracle and counted as the runtime counts it,
and each has a defect that a check catches."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from simhelpers import Run, failed
from test_sim_determinism import differences, numbers

from mw import MwManager
from mw import keys as K
from simulations.scenario import MIX_OPERATIONS, ScenarioError, parse_scenario
from simulations.truth import BEYOND, FRESH, WITHIN, Truth

EVERY_PATH = {
    "get_item_typed": 4,
    "get_many_typed": 2,
    "get_or_load": 2,
    "del_global_item_typed": 1,
    "del_global_key": 1,
    "batch_size": 4,
}
WRITES = {"write_fraction": 0.05, "write_popularity": "zipf"}
NO_TASKS = {"enabled": False}
"""The item paths alone (a defect of the writers then shows in item reads only)."""


def ops(result: dict[str, Any]) -> dict[str, Any]:
    return result["runs"]["cached"]["operations"]  # type: ignore[no-any-return]


def test_every_path_in_one_run_passes_and_the_mix_is_honoured(simulate: Run) -> None:
    result = simulate("staging-synthetic", mix=EVERY_PATH, items=WRITES)
    assert failed(result) <= {"hit_ratio_week1"}, "hot items written and deleted miss: the ratio is the load's"
    counts = ops(result)["counts"]
    item_ops = {name: counts[name] for name in MIX_OPERATIONS}
    total = sum(item_ops.values())
    weights = {name: float(EVERY_PATH[name]) for name in MIX_OPERATIONS}
    assert total > 2000
    for name, n in item_ops.items():
        assert abs(n / total - weights[name] / sum(weights.values())) < 0.04, (name, item_ops)
    assert counts["set_global_item_typed"] > 0 and counts["memory_metrics"] > 0 and counts["get_task"] > 0
    batch = ops(result)["batch"]
    assert batch["keys"] == batch["values"] + batch["followups"] and batch["values"] > 0 < batch["followups"]
    run = result["runs"]["cached"]
    assert run["stale"]["absent_answers"]["item"] > 0, "deleted items are read, and answered absent"
    assert run["telemetry_truth"]["hit_ratio"]["difference"] == 0.0


def test_a_run_without_mix_draws_as_before() -> None:
    """The default weighs only reads by key: no draw picks the operation (staging-synthetic's result.json counts are
    the same with and without this table; docs/simulator.md)."""
    default = parse_scenario({"name": "x"}).mix
    assert default.by_key_only and default.weights() == [("get_item_typed", 1.0)]
    assert not parse_scenario({"name": "x", "mix": {"get_or_load": 1}}).mix.by_key_only


def test_the_mix_is_deterministic(simulate: Run) -> None:
    first = simulate("staging-synthetic", mix=EVERY_PATH, items=WRITES, run={"duration_s": 120.0})
    second = simulate("staging-synthetic", mix=EVERY_PATH, items=WRITES, run={"duration_s": 120.0})
    diff = differences(numbers(first), numbers(second))
    assert not diff, "\n".join(diff[:40])


def test_a_batch_runtime_that_forgets_its_misses_fails_telemetry_truth(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = {"get_item_typed": 0, "get_many_typed": 1, "batch_size": 6}
    intact = simulate("staging-synthetic", mix=batches)
    assert "telemetry_truth" not in failed(intact) and ops(intact)["batch"]["followups"] > 0
    real = MwManager.get_many_typed

    def uncounted(self: MwManager, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
        before = self.telemetry.misses
        found = real(self, kind, scope, item_ids)
        self.telemetry.misses = before
        return found

    monkeypatch.setattr(MwManager, "get_many_typed", uncounted)
    broken = simulate("staging-synthetic", mix=batches)
    assert "telemetry_truth" in failed(broken)
    truth = broken["runs"]["cached"]["telemetry_truth"]
    assert truth["mismatched_counters"] == ["misses"] and truth["hit_ratio"]["difference"] > 0


@pytest.mark.parametrize("path", ["get_many_typed", "get_or_load"])
def test_stale_copies_served_by_a_path_fail_no_stale_reads(simulate: Run, path: str) -> None:
    """Writers that tell no cache: the old copies that batches and TTL'd reads return are judged and caught."""
    mix = {"get_item_typed": 0, path: 1}
    broken = simulate("staging-synthetic", mix=mix, items=WRITES, tasks=NO_TASKS, defects={"skip_invalidation": True})
    assert "no_stale_reads" in failed(broken)
    assert ops(broken)["stale_beyond_bounds"].get(path, 0) > 0


def test_a_read_with_the_callers_ttl_keeps_the_copy_that_long(simulate: Run) -> None:
    """``get_or_load_ttl_s`` is what the fill gets: with 5 s instead of the scenario's hour in L2 the reads load
    far more often."""
    mix = {"get_item_typed": 0, "get_or_load": 1}
    long = simulate("staging-synthetic", mix={**mix, "get_or_load_ttl_s": 3600.0}, tasks=NO_TASKS)
    short = simulate("staging-synthetic", mix={**mix, "get_or_load_ttl_s": 5.0}, tasks=NO_TASKS)
    assert failed(long) == set() and "no_stale_reads" not in failed(short)
    assert short["runs"]["cached"]["loads"]["loads"] > 2 * long["runs"]["cached"]["loads"]["loads"]


EAGER = {"xfetch_beta": 1000.0}
"""XFetch refreshes a hit long before it expires: ``get_or_load``'s early refresh happens all the time."""


def test_early_refreshes_of_get_or_load_are_counted_and_no_stampede(simulate: Run) -> None:
    mix = {"get_item_typed": 0, "get_or_load": 1, "get_or_load_ttl_s": 20.0}
    result = simulate("staging-synthetic", mix=mix, tasks=NO_TASKS, runtime=EAGER)
    assert failed(result) == set()
    run = result["runs"]["cached"]
    assert run["telemetry_truth"]["counters"]["early_refreshes"]["observed"] > 50
    assert run["loads"]["stampede_loads"] == 0, "one refresh opens the next generation; it is no second load"


def test_a_runtime_that_hides_its_early_refreshes_fails_telemetry_truth(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = MwManager.finish_load

    def hiding(self: MwManager, plan: Any, value: Any, ttl_s: float | None = None, delta: float = 0.0) -> bool:
        before = self.telemetry.early_refreshes
        filled = real(self, plan, value, ttl_s, delta)
        self.telemetry.early_refreshes = before
        return filled

    monkeypatch.setattr(MwManager, "finish_load", hiding)
    mix = {"get_item_typed": 0, "get_or_load": 1, "get_or_load_ttl_s": 20.0}
    broken = simulate("staging-synthetic", mix=mix, tasks=NO_TASKS, runtime=EAGER)
    assert failed(broken) == {"telemetry_truth"}
    assert broken["runs"]["cached"]["telemetry_truth"]["mismatched_counters"] == ["early_refreshes"]


@pytest.mark.parametrize("api", ["del_global_item_typed", "del_global_key"])
def test_deletes_that_skip_the_cache_fail_no_stale_reads(simulate: Run, api: str) -> None:
    deletes = {"get_item_typed": 8, api: 1}
    intact = simulate("staging-synthetic", mix=deletes, tasks=NO_TASKS)
    assert failed(intact) == set()
    assert ops(intact)["counts"][api] > 0 and intact["runs"]["cached"]["stale"]["absent_answers"]["item"] > 0
    broken = simulate("staging-synthetic", mix=deletes, tasks=NO_TASKS, defects={"skip_invalidation": True})
    assert "no_stale_reads" in failed(broken)
    assert ops(broken)["counts"][api] == 0, "the defect never reaches the cache"
    assert ops(broken)["stale_beyond_bounds"]["get_item_typed"] > 0, "reads by key return the deleted value"
    example = broken["runs"]["cached"]["stale"]["examples"][0]
    assert example["returned"] < example["current"]


def test_a_runtime_whose_typed_delete_drops_nothing_fails_no_stale_reads(
    simulate: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime broken, not the workload: ``del_global_item_typed`` returns without dropping a copy."""
    monkeypatch.setattr(MwManager, "del_global_item_typed", lambda self, kind, scope, item_id: False)
    by_key = simulate("staging-synthetic", mix={"get_item_typed": 8, "del_global_key": 1}, tasks=NO_TASKS)
    assert failed(by_key) == set(), "the other delete path still works"
    broken = simulate("staging-synthetic", mix={"get_item_typed": 8, "del_global_item_typed": 1}, tasks=NO_TASKS)
    assert "no_stale_reads" in failed(broken)
    assert broken["runs"]["cached"]["stale"]["stale_beyond_bounds"]["item"] > 0


def test_task_changes_through_update_task_status(simulate: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    public = {"task_updates": "update_task_status"}
    intact = simulate("task-churn", mix=public, tasks={"invalidation_delay_s": 0.0})
    assert failed(intact) == set()
    counts = ops(intact)["counts"]
    assert counts["update_task_status"] > 100 and counts["invalidate_task"] == 0
    assert intact["runs"]["cached"]["tasks"]["transitions"] == counts["update_task_status"]

    def mlt_only(self: MwManager, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        return self.cluster.mlt.update_task_status(task_id, status, **fields)  # type: ignore[no-any-return]

    monkeypatch.setattr(MwManager, "update_task_status", mlt_only)
    broken = simulate("task-churn", mix=public, tasks={"invalidation_delay_s": 0.0})
    assert {"no_stale_reads", "telemetry_truth"} <= failed(broken)
    run = broken["runs"]["cached"]
    assert run["stale"]["stale_beyond_bounds"]["task"] > 0
    assert run["telemetry_truth"]["mismatched_counters"] == ["task_evictions"]


def test_the_report_lists_the_operations(simulate: Run) -> None:
    from simulations.report import markdown

    result = simulate("staging-synthetic", mix=EVERY_PATH, run={"duration_s": 90.0, "warmup_s": 30.0})
    names = dict.fromkeys(("hit_ratio", "mlt_qps", "l0_size", "loads_per_expiry"), "x.png")
    text = markdown(result, names)
    section = text[text.index("## Operations") :]
    counts = ops(result)["counts"]
    for name in ("get_item_typed", "get_many_typed", "get_or_load", "del_global_key", "memory_metrics"):
        assert f"| `{name}` | {counts[name]} | 0 |" in section
    assert "left out and then read by key" in section


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ({"get_many_typed": -1}, "get_many_typed = -1: a weight is a number >= 0"),
        ({"get_or_load": "often"}, "get_or_load = 'often': a weight"),
        ({"del_global_key": True}, "del_global_key = True: a weight"),
        ({"get_item_typed": float("inf")}, "get_item_typed = inf: a weight"),
        ({"get_item_typed": 0}, "every weight is 0"),
        ({"get_everything": 1}, "[mix] has no setting 'get_everything'"),
        ({"batch_size": 0}, "batch_size = 0: a whole number"),
        ({"batch_size": 2.5}, "batch_size = 2.5"),
        ({"get_or_load_ttl_s": 0}, "get_or_load_ttl_s = 0: a number of seconds > 0"),
        ({"task_updates": "sql"}, "task_updates = 'sql' is not one of put_task, update_task_status"),
    ],
)
def test_a_bad_mix_is_a_scenario_error_naming_it(mix: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape("x.toml: [mix] ")) as err:
        parse_scenario({"name": "x", "mix": mix}, "x.toml")
    assert message in str(err.value)


def test_update_task_status_cannot_be_a_late_writer() -> None:
    data = {"name": "x", "mix": {"task_updates": "update_task_status"}, "tasks": {"invalidation_delay_s": 0.05}}
    with pytest.raises(ScenarioError, match=re.escape("invalidation_delay_s = 0.05 needs task_updates = 'put_task'")):
        parse_scenario(data, "x.toml")
    scenario = parse_scenario({"name": "x", "tasks": {"invalidation_delay_s": 0.05}}, "x.toml")
    with pytest.raises(ScenarioError, match="invalidates at once"):
        scenario.with_overrides(mix={"task_updates": "update_task_status"})


def test_the_truth_of_a_deleted_and_recreated_record() -> None:
    truth = Truth()
    truth.created("a", 1, 0.0, None, "1|x")
    assert truth.deleted("a", 10.0, 10.0) and not truth.exists("a") and not truth.deleted("a", 11.0, 11.0)
    assert truth.judge_absent("a", 5.0) == FRESH, "the read started before the delete and ended after it"
    assert truth.judge_absent("a", 12.0) == FRESH
    assert truth.judge("a", 1, 5.0) == FRESH and truth.judge("a", 1, 12.0) == BEYOND
    assert truth.judge("a", 2, 12.0) == BEYOND, "no value names the absent version"
    truth.superseded("a", 3, 20.0, 20.25, "3|x")
    assert truth.exists("a") and truth.mlt_base["a"] == 2 and truth.version("a") == 3
    assert truth.judge_absent("a", 15.0) == FRESH and truth.judge_absent("a", 20.1) == WITHIN
    assert truth.judge_absent("a", 21.0) == BEYOND and truth.judge("a", 3, 21.0) == FRESH
    assert truth.judge("a", 1, 21.0) == BEYOND


def test_the_ray_engine_refuses_a_mix_it_would_not_judge() -> None:
    from simulations.backends import Backend
    from simulations.ray_engine import run_on_ray
    from simulations.runner import RunOptions

    scenario = parse_scenario({"name": "x", "mix": {"get_many_typed": 1}})
    with pytest.raises(ScenarioError, match=r"x: \[mix\] batches, get_or_load and deletes run on the SimPy engine"):
        run_on_ray(scenario, Backend("embedded"), RunOptions())
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'pytest-mw[ray]'")
    tasks_only = parse_scenario({"name": "x", "mix": {"task_updates": "update_task_status"}})
    with pytest.raises(ValueError, match="needs a Redis"):  # past the mix check: task changes are judged in a shard
        run_on_ray(tasks_only, Backend("embedded"), RunOptions())


def test_a_batch_asks_for_what_l0_holds_first(base_model: Any) -> None:
    """The runtime fills L0 from L1 as it walks a batch: asked first, an L1 hit would evict an id L0 held further
    on, which the simulator had counted as an L0 hit. Asked in L0-first order the counts agree."""
    model = base_model
    me = model.add_agent()
    ids = ["in-l1", "b", "c"]
    keys = [K.global_typed_key("doc", "shared", i) for i in ids]
    model.admin.set_global_item_typed("doc", "shared", "in-l1", "1|a")  # node-0's L1 (and L2), not this L0
    for item_id in ("b", "c"):
        me.manager.set_global_item_typed("doc", "shared", item_id, f"1|{item_id}")
    assert [key in me.l0 for key in keys] == [False, True, True]
    found = model.lookup_many(me, "doc", "shared", ids, keys)
    assert set(found) == set(ids)
    telemetry, seen = me.manager.telemetry, me.seen
    assert (seen.l0, seen.l1, seen.l2, seen.missed) == (2, 1, 0, 0)
    assert (telemetry.l0_hits, telemetry.l1_hits, telemetry.l2_hits, telemetry.misses) == (2, 1, 0, 0)
    other = model.add_agent()  # node-1: the same ids in the caller's order show the hazard
    for item_id in ("b", "c"):
        other.manager.set_global_item_typed("doc", "shared", item_id, f"1|{item_id}")
    other.l1.set(keys[0], me.l1.get(keys[0]), me.l1.expire_at(keys[0]))
    other.manager.get_many_typed("doc", "shared", ids)
    assert other.manager.telemetry.l0_hits < 2, "an L1 fill evicted an id L0 held"


@pytest.fixture
def base_model() -> Iterator[Any]:
    """A model with a two-item L0 per agent, on the embedded backend, closed afterwards."""
    import uuid

    import simpy

    from mw import MwConfig
    from simulations.model import Model

    config = MwConfig.from_env({}, namespace=f"paths{uuid.uuid4().hex[:10]}", l0_max_items=2, ttl_jitter=0.0)
    model = Model(simpy.Environment(), parse_scenario({"name": "x"}), config)
    yield model
    for agent in model.agents:
        agent.manager.close()
    model.admin.close()
    model.cluster.close()
