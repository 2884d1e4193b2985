"""The stale-read oracle judges every read (values, ``None``, negative answers) by the documented bounds.

Each defect is put in through the scenario's fault settings, which act through public ``MwManager`` methods
(``del_global_item_typed`` + ``set_negative_cache`` on a present item; writers that skip the write-through and
``invalidate_task``) or through a writer slower than the bound it is held to; the check itself is never touched.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simhelpers import Run, check, failed

from simulations.truth import BEYOND, BUS_LAG_S, FRESH, WITHIN, Truth

QUICK_RUN = {"agents": 6, "duration_s": 90.0, "warmup_s": 20.0}
"""The CLI tests' QUICK: 6 agents, 90 simulated seconds."""
HOT_WRITES = {"write_popularity": "zipf", "write_fraction": 0.2}
"""Writes on the items everyone reads: old copies are about whenever a write lands."""


# --- the judge -------------------------------------------------------------------------------------------------


def test_absent_answers_are_judged_against_existence() -> None:
    truth = Truth()
    truth.created("i1", 1, at=0.0)
    truth.created("t1", 1, at=5.0, deadline=5.25)
    assert truth.judge_absent("missing-1", started_at=100.0) == FRESH  # never existed: None is the truth
    assert truth.judge("missing-1", 1, started_at=100.0) == BEYOND  # a value for it is a violation
    assert truth.judge_absent("i1", started_at=0.5) == BEYOND  # present since t=0: a wrongly cached "absent"
    assert truth.judge_absent("t1", started_at=4.0) == FRESH  # the read started before the task existed
    assert truth.judge_absent("t1", started_at=5.1) == WITHIN  # the creation had not reached every cache yet
    assert truth.judge_absent("t1", started_at=5.3) == BEYOND
    assert truth.version("missing-1") == 0 and truth.version("t1") == 1


def test_a_version_never_written_is_beyond_the_bounds() -> None:
    truth = Truth()
    truth.created("i1", 1, at=0.0)
    assert truth.judge("i1", 0, started_at=1.0) == BEYOND
    assert truth.judge("i1", 1, started_at=1.0) == FRESH


schedules = st.lists(st.floats(min_value=0.0, max_value=10.0, allow_nan=False), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    born=st.floats(min_value=0.0, max_value=5.0),
    gaps=schedules,
    lag=st.sampled_from([0.0, BUS_LAG_S, 3.0]),
    started=st.floats(min_value=-1.0, max_value=100.0),
)
def test_judge_follows_the_schedule_of_writes(born: float, gaps: list[float], lag: float, started: float) -> None:
    """Versions written at ``born`` and then after each gap; every answer a read could give, judged by the bound."""
    truth = Truth()
    truth.created("r", 1, at=born, deadline=born + lag)
    written = [born]
    for gap in gaps:
        at = written[-1] + gap
        written.append(at)
        truth.superseded("r", len(written), at, at + lag)
    assert truth.version("r") == len(written)
    for version in range(1, len(written) + 1):
        verdict = truth.judge("r", version, started)
        superseded = written[version] if version < len(written) else float("inf")
        if started < superseded:
            assert verdict == FRESH  # current when the read started (or later: written while it ran)
        elif started <= superseded + lag:
            assert verdict == WITHIN
        else:
            assert verdict == BEYOND
        if lag == 0.0 and started != superseded:
            assert verdict != WITHIN  # an in-process writer leaves no window (but its own instant: order unknown)
    absent = truth.judge_absent("r", started)
    assert absent == (FRESH if started < born else WITHIN if started <= born + lag else BEYOND)
    current = sum(1 for at in written if at <= started)
    if current:
        assert truth.judge("r", current, started) == FRESH  # what Mlt held when the read started is never stale


# --- clean runs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["staging-synthetic", "hot-key-herd", "task-churn", "week2-prewarm"])
def test_bundled_scenarios_judge_every_read_and_pass(simulate: Run, name: str) -> None:
    result = simulate(name, run=QUICK_RUN)
    assert check(result, "no_stale_reads")["passed"]
    cached = result["runs"]["cached"]
    stale, reads = cached["stale"], cached["requests"]["outcomes"]
    assert stale["violations"] == 0 and not any(stale["stale_beyond_bounds"].values())
    for what in ("item", "task", "herd"):
        # every read is judged once it returns; a few are still in flight when the run stops
        assert 0 <= reads[f"{what}_reads"] - stale["checked"][what] <= 2 * QUICK_RUN["agents"], what
        assert 0 <= stale["stale_within_bounds"][what] <= stale["checked"][what]
    if cached["negative_cache_hits"]:
        assert stale["absent_answers"]["item"] > 0  # negative answers are judged too


def test_a_writer_heard_over_the_bus_makes_reads_within_the_bounds(simulate: Run) -> None:
    """task-churn's workers live elsewhere: reads between the Mlt write and the invalidation are within the bounds."""
    result = simulate("task-churn")
    stale = result["runs"]["cached"]["stale"]
    assert check(result, "no_stale_reads")["passed"]
    assert stale["tolerance_s"]["task"] == BUS_LAG_S
    assert stale["stale_within_bounds"]["task"] > 0
    assert stale["violations"] == 0


def test_delayed_item_write_through_within_the_bound_passes(simulate: Run) -> None:
    result = simulate("staging-synthetic", items={**HOT_WRITES, "invalidation_delay_s": 0.2})
    stale = result["runs"]["cached"]["stale"]
    assert check(result, "no_stale_reads")["passed"]
    assert stale["tolerance_s"]["item"] == BUS_LAG_S
    assert stale["stale_within_bounds"]["item"] > 0


# --- defects ---------------------------------------------------------------------------------------------------


def test_a_present_item_cached_as_absent_fails_no_stale_reads(simulate: Run) -> None:
    intact = simulate("staging-synthetic")
    assert check(intact, "no_stale_reads")["passed"]
    broken = simulate("staging-synthetic", defects={"mark_present_absent": True, "every_s": 20.0})
    assert failed(broken) == {"no_stale_reads"}
    stale = broken["runs"]["cached"]["stale"]
    assert stale["stale_beyond_bounds"]["item"] > 0
    assert any(ex["returned"] == 0 and ex["current"] >= 1 for ex in stale["examples"])


def test_task_rows_served_after_a_skipped_invalidation_fail_no_stale_reads(simulate: Run) -> None:
    broken = simulate("task-churn", defects={"skip_invalidation": True})
    row = check(broken, "no_stale_reads")
    assert not row["passed"] and row["shortfall"].endswith("reads")
    stale = broken["runs"]["cached"]["stale"]
    assert stale["stale_beyond_bounds"]["task"] > 0
    assert all(ex["returned"] < ex["current"] for ex in stale["examples"])


def test_items_served_after_a_skipped_write_through_fail_no_stale_reads(simulate: Run) -> None:
    broken = simulate("staging-synthetic", items=HOT_WRITES, defects={"skip_invalidation": True})
    assert not check(broken, "no_stale_reads")["passed"]
    assert broken["runs"]["cached"]["stale"]["stale_beyond_bounds"]["item"] > 0


@pytest.mark.parametrize(
    ("scenario", "table", "what"),
    [("task-churn", "tasks", "task"), ("staging-synthetic", "items", "item")],
)
def test_an_invalidation_slower_than_the_bus_bound_fails(simulate: Run, scenario: str, table: str, what: str) -> None:
    slow = {"invalidation_delay_s": 8 * BUS_LAG_S, **(HOT_WRITES if table == "items" else {})}
    broken = simulate(scenario, **{table: slow})
    assert not check(broken, "no_stale_reads")["passed"]
    stale = broken["runs"]["cached"]["stale"]
    assert stale["stale_beyond_bounds"][what] > 0
    assert stale["stale_within_bounds"][what] > 0  # the first BUS_LAG_S of each window is still allowed
