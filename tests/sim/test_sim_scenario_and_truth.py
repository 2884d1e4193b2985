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


def test_writes_in_doubt_are_within_the_bounds_until_mlt_accounts_for_them() -> None:
    """Two item writes fail in doubt (labels 2 and 3): the current answer and either doubted one are within the
    bounds, a label never written is not. The next write's Mlt version shows both landed: the doubt ends, and the
    doubted answers are held to that write's bound like any older version."""
    truth = Truth()
    truth.created("i", value="1|a")
    truth.doubted("i", truth.next_version("i"))
    truth.doubted("i", truth.next_version("i"))
    assert truth.next_version("i") == 4 and "i" not in truth.latest
    assert [truth.judge("i", v, started_at=5.0) for v in (1, 2, 3, 9)] == [1, 1, 1, 2]
    with pytest.raises(RuntimeError, match="at most 2 doubted writes"):
        truth.landed("i", 5, expected=2)  # three more than expected: not explained by two doubts
    truth.landed("i", 4, expected=2)  # Mlt numbered the write 4: both doubted writes landed before it
    truth.superseded("i", 4, at=10.0, deadline=10.5, value="4|d")
    assert "i" not in truth.doubts and truth.doubt_counts == {"writes": 2, "landed": 2, "reads": 3}
    assert truth.judge("i", 3, started_at=10.2) == 1 and truth.judge("i", 3, started_at=11.0) == 2
    assert truth.latest["i"] == "4|d"


def test_a_doubted_write_landing_after_a_later_one_is_held_to_the_write_that_accounts_for_it() -> None:
    """Label 2 is doubted; the write of 3 succeeds with no doubt landed (Mlt 2); then 2 lands (Mlt 3, value "2|"),
    and the write of 4 (Mlt 4) accounts for it. Mlt held 2 until the write of 4: a read of it before then (or
    within that write's bound) is not beyond the bounds, one after is."""
    truth = Truth()
    truth.created("i", value="1|a")
    truth.doubted("i", 2)
    assert truth.landed("i", 2, expected=2) == set()
    truth.superseded("i", 3, at=10.0, deadline=10.0, value="3|c")
    assert truth.judge("i", 2, started_at=15.0) == 1  # still in doubt
    settled = truth.landed("i", 4, expected=3)
    assert settled == {2} and "i" not in truth.doubts
    truth.superseded("i", 4, at=20.0, deadline=20.5, value="4|d")
    truth.settle("i", settled)
    assert truth.judge("i", 2, started_at=19.0) == 0  # Mlt's answer when the read started
    assert truth.judge("i", 2, started_at=20.2) == 1 and truth.judge("i", 2, started_at=21.0) == 2
    assert truth.judge("i", 3, started_at=15.0) == 0  # superseded by the late landing at some point: not judged


def test_a_write_in_doubt_that_has_not_landed_stays_in_doubt() -> None:
    truth = Truth()
    truth.created("i")
    truth.doubted("i", 2)
    truth.landed("i", 2, expected=2)  # the next write (label 3) is Mlt's 2: the doubted one never landed
    assert truth.doubts["i"].outstanding == 1  # it may still: nothing proves otherwise
    truth.superseded("i", 3, at=10.0, deadline=10.0)
    assert truth.judge("i", 2, started_at=20.0) == 1  # still possibly Mlt's answer
    with pytest.raises(RuntimeError, match="expected 4"):
        Truth().landed("j", 5, expected=4)  # no doubt: Mlt's version must be the expected one


def test_task_changes_and_deletes_in_doubt() -> None:
    """A task change in doubt (Mlt numbers it): the next version or two are within the bounds while two are
    outstanding. A doubted delete makes ``None`` a possible answer until the run ends."""
    truth = Truth()
    truth.created("t", 3, at=0.0)
    truth.doubted("t")
    truth.doubted("t")
    assert [truth.judge("t", v, started_at=5.0) for v in (3, 4, 5, 6)] == [1, 1, 1, 2]
    truth.created("i", at=0.0)
    assert truth.judge_absent("i", started_at=5.0) == 2
    truth.doubted("i", delete=True)
    assert truth.judge_absent("i", started_at=5.0) == 1
    truth.landed("i", 1, expected=2)  # re-created after the delete landed: the count restarted
    assert "i" in truth.doubts


def test_a_doubted_delete_ends_when_mlt_shows_it_ran() -> None:
    """A later delete that finds nothing, or a later write numbered 1 again, shows the doubted delete ran: the doubt
    ends and the record was gone from then. One that may not have run yet (the later delete found the record) stays
    in doubt, and so does a record with other doubts besides the delete."""
    truth = Truth()
    truth.created("i", at=0.0, value="1|")
    truth.doubted("i", delete=True)
    assert truth.delete_ran("i", 10.0, 10.25, recreated=False)
    assert "i" not in truth.doubts and truth.doubt_counts["landed"] == 1
    assert not truth.exists("i") and truth.judge_absent("i", started_at=11.0) == 0
    assert truth.judge("i", 1, started_at=9.0) == 0 and truth.judge("i", 1, started_at=10.2) == 1
    assert truth.judge("i", 1, started_at=10.3) == 2  # the old value is now held to the delete's bound

    truth.created("j", 2, at=0.0)
    truth.doubted("j", delete=True)
    assert truth.delete_ran("j", 20.0, 20.0, recreated=True)
    truth.superseded("j", 3, 20.0, 20.25, "3|")
    assert truth.exists("j") and truth.judge("j", 3, started_at=21.0) == 0
    assert truth.judge_absent("j", started_at=19.0) == 0  # gone at an instant since that read started
    assert truth.judge_absent("j", started_at=20.1) == 1 and truth.judge_absent("j", started_at=21.0) == 2
    assert truth.judge("j", 2, started_at=21.0) == 2

    truth.created("k", at=0.0)
    truth.doubted("k", delete=True)
    truth.doubted("k", 2)
    assert not truth.delete_ran("k", 5.0, 5.0, recreated=False)  # a doubted write may land after the delete
    assert "k" in truth.doubts
    assert not Truth().delete_ran("x", 1.0, 1.0, recreated=False)  # no doubt at all: nothing to end
