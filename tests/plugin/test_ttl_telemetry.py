"""TTL and telemetry assertions: on fakeredis and a real Redis, and how their failures read."""

from __future__ import annotations

import json
import math

import pytest
from plugin_nested import run

from mw import ManualClock, MwManager
from mw import keys as K
from pytest_mw import (
    assert_hit_ratio,
    assert_memory_metrics,
    assert_task_ttl,
    assert_telemetry,
    assert_tier_hits,
    assert_tiers_ordered,
    assert_ttl,
    ttl_remaining,
)

pytestmark = pytest.mark.mw_backend("fakeredis", "redis")


def test_assert_ttl_reads_every_tier(mw: MwManager, mw_clock: ManualClock) -> None:
    mw.set_global_item_typed("doc", "s", "1", "v", ttl_s=60)
    measured = assert_ttl(mw, ("doc", "s", "1"), 60)
    assert set(measured) == {"L2", "L1", "L0"}
    assert measured["L1"] == pytest.approx(30), "L1 keeps at most MW_L1_TTL_S"
    assert_ttl(mw, K.global_typed_key("doc", "s", "1"), 60, tiers=("L2", "envelope", "L0"))
    mw_clock.advance(20)
    assert_ttl(mw, ("doc", "s", "1"), 40, tiers=("L1", "L0", "envelope"))
    embedded = mw.l2.url is None
    l2_left = ttl_remaining(mw, ("doc", "s", "1"), ("L2",))["L2"]
    assert l2_left == pytest.approx(40 if embedded else 60, abs=1), "fakeredis: the manager's clock; Redis: the wall"
    with pytest.raises(AssertionError, match=r"TTL of 'global:item:doc:s:1' is not 10s"):
        assert_ttl(mw, ("doc", "s", "1"), 10, tiers=("L0",))


def test_ttl_remaining_marks_absent_and_unbounded(mw: MwManager) -> None:
    mw.set_item("note", 1)
    assert ttl_remaining(mw, K.organ_key("test-agent", "note"), ("L0", "L1", "L2")) == {
        "L0": math.inf,
        "L1": None,
        "L2": None,
    }
    with pytest.raises(ValueError, match="unknown tier 'L3'"):
        ttl_remaining(mw, "x", ("L3",))


@pytest.mark.mw_config(ttl_jitter=0)
def test_task_ttl_follows_the_status_table_exactly_without_jitter(mw: MwManager, mw_clock: ManualClock) -> None:
    for status, ttl in (("running", 10), ("completed", 600), ("failed", 300), ("mystery", 30)):
        row = {"id": f"t-{status}", "status": status}
        assert mw.cache_task_row(row) == ttl
        assert_task_ttl(mw, row, tiers=("L2", "L0", "envelope"))
    leased = {"id": "t-lease", "status": "running", "lease_expires_at": mw_clock() + 4}
    mw.cache_task_row(leased)
    assert_task_ttl(mw, leased)
    wrong = {"id": "t-running", "status": "completed"}
    with pytest.raises(AssertionError, match=r"task 't-running' in status 'completed': the status table gives 600s"):
        assert_task_ttl(mw, wrong)


def test_task_ttl_accepts_the_runtime_jitter(mw_factory) -> None:
    mw = mw_factory("a", ttl_jitter=0.5)
    for i in range(20):
        row = {"id": i, "status": "completed"}
        assert 300 <= mw.cache_task_row(row) <= 600
        assert_task_ttl(mw, row)


@pytest.mark.mw_config(task_ttls_s={**{"created": 10, "queued": 10, "running": 0, "retry": 20}, "completed": 600,
                                    "failed": 300, "cancelled": 300, "default": 30, "negative": 30})  # fmt: skip
def test_task_ttl_zero_means_not_cached(mw: MwManager) -> None:
    row = {"id": "z", "status": "running"}
    mw.cache_task_row(row)
    assert_task_ttl(mw, row)


def test_telemetry_assertions(mw_factory) -> None:
    a, b = mw_factory("a"), mw_factory("b", node="n2")
    a.set_global_item_typed("doc", "s", "1", "v")
    for _ in range(8):
        a.get_item_typed("doc", "s", "1")
    b.get_item_typed("doc", "s", "1")
    b.get_item_typed("doc", "s", "missing")
    assert assert_hit_ratio(a, at_least=0.7) == 1.0
    assert_tier_hits(a, l0=8, l1=0, l2=0, misses=0)
    assert_tier_hits(b, l2=1, misses=1)
    assert_telemetry(a.get_telemetry(), l0_hits=8)
    assert_tiers_ordered(a)
    heartbeat = {"organ_id": "a", "memory_metrics": a.memory_metrics()}
    assert assert_memory_metrics(heartbeat)["mw_l0_hits"] == 8
    assert_memory_metrics(json.dumps(heartbeat))
    assert_hit_ratio(heartbeat, at_least=0.7)
    with pytest.raises(AssertionError, match=r"hit ratio 0\.500 is below 0\.7"):
        assert_hit_ratio(b, at_least=0.7)
    with pytest.raises(AssertionError, match="only 0 lookups"):
        assert_hit_ratio(mw_factory("idle"), at_least=0.7)
    with pytest.raises(KeyError, match="no such counters: l9_hits"):
        assert_telemetry(a, l9_hits=1)


def test_memory_metrics_shape_failures_list_every_problem() -> None:
    bad = {
        "mw_hit_ratio": 1.5,
        "mw_l0_hits": True,
        "mw_l1_hits": 1.0,
        "mw_l2_hits": -1,
        "mw_task_cache_hits": 0,
        "mw_task_evictions": 0,
        "mw_negative_cache_hits": 0,
        "mw_hot_items": [["task:1", "5"]],
    }
    with pytest.raises(AssertionError) as info:
        assert_memory_metrics({"memory_metrics": bad})
    text = str(info.value)
    for expected in (
        "mw_task_cache_misses is missing",
        "mw_hit_ratio = 1.5 is not a ratio in [0, 1]",
        "mw_l0_hits is a bool (True), expected int",
        "mw_l1_hits is float (1.0), expected int",
        "mw_l2_hits = -1 is negative",
        "mw_hot_items entry ['task:1', '5'] is not [item: str, count: int]",
    ):
        assert expected in text
    with pytest.raises(TypeError, match="expected a heartbeat"):
        assert_memory_metrics(["not", "a", "dict"])


def test_ttl_failure_output_is_a_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
from pytest_mw import assert_ttl, assert_task_ttl

def test_ttl(mw):
    mw.set_global_item_typed("doc", "s", "1", "v", ttl_s=60)
    assert_ttl(mw, ("doc", "s", "1"), 30)

def test_task(mw):
    row = {"id": 9, "status": "running"}
    mw.cache_task_row({"id": 9, "status": "completed"})
    assert_task_ttl(mw, row)
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E*TTL of 'global:item:doc:s:1' is not 30s (tolerance 1s):",
            "E*L2 *s   expected 30..30s   <-- outside",
            "E*L1*30s   expected 0..30s",
            "E*L0*60s   expected 30..30s   <-- outside",
            "E*assert {'L2': *, 'L0': 60.0} == {}",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E*task 9 in status 'running': the status table gives 10s (jitter 0.1, tolerance 1s):",
            "E*L2*expected 9..10s   <-- outside",
        ]
    )
