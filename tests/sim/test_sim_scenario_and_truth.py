"""Scenario files are strict, and the truth model judges stale reads by the documented bounds."""

from __future__ import annotations

import math

import pytest

from simulations.distributions import Latency, Zipf
from simulations.scenario import LatencySpec, ScenarioError, bundled, load_scenario, parse_scenario
from simulations.truth import Truth


def test_every_bundled_scenario_loads_and_states_targets() -> None:
    assert {"staging-synthetic", "hot-key-herd", "task-churn", "week2-prewarm"} <= set(bundled())
    for path in bundled().values():
        scenario = load_scenario(path)
        assert scenario.description.strip()
        assert scenario.targets.hit_ratio_week1 is not None
        assert not scenario.defects.double_prefix_writer
        scenario.config()
    assert load_scenario("week2-prewarm").targets.hit_ratio_week2 == 0.80


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"name": "x", "items": {"catalogue": 3}}, "catalogue"),
        ({"name": "x", "runtime": {"l0_max_item": 3}}, "l0_max_item"),
        ({"name": "x", "runtime": {"l0_max_items": 0}}, "MW_L0_MAX_ITEMS"),
        ({"name": "x", "target": {}}, "target"),
        ({"items": {}}, "name"),
    ],
)
def test_mistakes_are_named(data: dict[str, object], words: str) -> None:
    with pytest.raises(ScenarioError, match=words):
        parse_scenario(data, "test.toml")


def test_stale_reads_are_judged_by_the_bounds() -> None:
    truth = Truth()
    truth.created("t1")
    truth.superseded("t1", 2, at=10.0, deadline=10.0)  # invalidated with the write
    truth.superseded("t1", 3, at=20.0, deadline=25.0)  # a writer that left it to a 5 s TTL
    assert truth.judge("t1", 1, started_at=9.0) == 0  # read started before the write
    assert truth.judge("t1", 1, started_at=10.5) == 2  # after the invalidation: a violation
    assert truth.judge("t1", 2, started_at=22.0) == 1  # within the TTL bound: allowed
    assert truth.judge("t1", 2, started_at=25.5) == 2
    assert truth.judge("t1", 3, started_at=1e9) == 0
    assert truth.judge("unknown", 1, started_at=0.0) == 2  # a value of a record Mlt never had


def test_an_open_ended_outage_gets_its_end_once_known() -> None:
    """A real failover's window is open-ended until the promotion: a write in it leaves the old copy acceptable
    only until the end that becomes known, not for ever (and a write after it is judged as usual)."""
    truth = Truth()
    truth.outages = [(10.0, math.inf)]
    truth.created("r")
    truth.superseded("r", 2, at=12.0, deadline=12.0)
    truth.deleted("r", at=13.0, deadline=13.0)
    truth.superseded("r", 4, at=14.0, deadline=14.0)  # re-created after the delete
    assert truth.judge("r", 1, started_at=1e6) == 1, "while the end is unknown, the old copy is within the bound"
    truth.outages = [(10.0, 30.0)]
    truth.end_open_outages(30.0)
    assert truth.judge("r", 1, started_at=29.0) == 1
    assert truth.judge("r", 1, started_at=31.0) == 2
    assert truth.judge_absent("r", started_at=29.0) == 1
    assert truth.judge_absent("r", started_at=31.0) == 2


def test_zipf_drifts_and_latency_has_its_median() -> None:
    import random

    zipf = Zipf(100, 1.2)
    rng = random.Random(1)
    draws = [zipf.item(rng) for _ in range(10_000)]
    assert draws.count(0) > draws.count(50) * 20
    zipf.drift(10)
    assert sum(zipf.item(rng) == 10 for _ in range(1000)) > 100
    latency = Latency(LatencySpec("lognormal", 10, 100), random.Random(2))
    samples = sorted(latency() for _ in range(20_001))
    assert math.isclose(samples[10_000], 0.010, rel_tol=0.1)
    assert Latency(LatencySpec("none"), rng)() == 0.0
