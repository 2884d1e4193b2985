"""Telemetry: heartbeat fields, per-tier hits, hot items of real items only, quiet logs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import mw
from mw import MwManager
from mw.faults import Act, injected
from mw.telemetry import METRIC_FIELDS, HeavyHitters

Make = Callable[..., MwManager]


def test_memory_metrics_has_every_checklist_field_with_its_type(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("task", "by_id", "123", {"status": "queued"})
    for _ in range(5):
        a.get_item_typed("task", "by_id", "123")
    a.get_item_typed("doc", "s", "absent")
    m = a.memory_metrics()
    for field, typ in METRIC_FIELDS.items():
        assert isinstance(m[field], typ), field
    assert m["mw_hit_ratio"] == pytest.approx(5 / 6)
    assert m["mw_l0_hits"] == 5 and m["mw_hot_items"][0] == ["task:by_id:123", 5]
    assert m["mw_l0_items"] == 1 and m["mw_l0_max_items"] == a.config.l0_max_items


def test_process_memory_metrics_report_l1_items_and_bytes(make_manager: Make) -> None:
    """Every in-process node tier is summed; its bytes count the envelopes it holds and their entries."""
    before = mw.process_memory_metrics()
    a = make_manager("a")
    b = make_manager("b", node="n2")
    for i in range(3):
        a.set_global_item_typed("doc", "s", str(i), {"text": "x" * 1000})
    b.get_item_typed("doc", "s", "0")
    m = mw.process_memory_metrics()
    assert m.get("mw_l1_items", 0) - before.get("mw_l1_items", 0) == 4, "three copies in a's node tier, one in b's"
    envelopes = [a.l1.get(f"global:item:doc:s:{i}") for i in range(3)] + [b.l1.get("global:item:doc:s:0")]
    held = sum(len(d) for d in envelopes if d is not None)
    added = m["mw_l1_bytes"] - before["mw_l1_bytes"]
    assert held < added <= held + 4 * 1024, "envelope bytes plus a bounded per-entry overhead"


def test_hot_items_ignore_internal_probes(make_manager: Make) -> None:
    a = make_manager("a")
    for _ in range(10):
        a.check_negative_cache("doc", "s", "1")
        a.try_set_inflight("global:item:doc:s:1", 1)
    a.get_item_typed("doc", "s", "2")
    a.get_item_typed("doc", "s", "3")
    assert a.get_hot_items() == [], "an item seen once is not hot yet"
    a.get_item_typed("doc", "s", "2")
    assert a.get_hot_items() == [["doc:s:2", 2]]


def test_reset_and_process_totals(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    a.set_global_item_typed("doc", "s", "1", "v")
    a.get_item_typed("doc", "s", "1")
    b.get_item_typed("doc", "s", "1")
    before = mw.process_memory_metrics()["mw_l0_hits"]
    b.get_item_typed("doc", "s", "1")
    assert mw.process_memory_metrics()["mw_l0_hits"] == before + 1
    b.close()
    assert mw.process_memory_metrics()["mw_l0_hits"] == before + 1, "a closed agent's counts are kept"
    a.reset_telemetry()
    assert a.get_telemetry()["hits"] == 0 and a.get_hot_items() == []


def test_miss_lines_are_debug_only(make_manager: Make, caplog: pytest.LogCaptureFixture) -> None:
    a = make_manager("a")
    with caplog.at_level(logging.INFO, logger="mw"):
        for i in range(50):
            a.get_item_typed("doc", "s", str(i))
    assert "MISS" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="mw"):
        a.get_item_typed("doc", "s", "x")
    assert "MISS global:item:doc:s:x" in caplog.text


def test_heavy_hitters_keeps_the_heavy_ones_bounded() -> None:
    hh = HeavyHitters(capacity=8)
    for i in range(5000):
        hh.add(f"k{i % 400}")
        if i % 3 == 0:
            hh.add("hot-a", 3)
        if i % 5 == 0:
            hh.add("hot-b", 2)
    top = [k for k, _ in hh.top(2)]
    assert top == ["hot-a", "hot-b"]
    assert len(hh._counts) <= 16
    with pytest.raises(ValueError, match="0"):
        HeavyHitters(0)


def test_process_metrics_sum_every_agents_l0(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    a.set_item("x", 1)
    b.set_item("y", 2)
    b.set_item("z", 3)
    metrics = mw.process_memory_metrics()
    assert metrics["mw_l0_items"] >= 3 and metrics["mw_l0_max_items"] >= 2 * a.config.l0_max_items


def _counted(m: MwManager) -> int:
    t = m.telemetry
    return t.l0_hits + t.l1_hits + t.l2_hits + t.misses + t.negative_cache_hits


def test_a_read_answered_by_the_lease_holder_is_counted_once_as_a_miss(make_manager: Make) -> None:
    """A waiter that finds the holder's value in L2 missed: it is not also an L2 hit (hits + misses == reads).

    ``b`` has a cluster of its own (another process): it waits on the cluster lease, not on ``a``'s flight.
    """
    a, b = make_manager("a"), make_manager("b", node="n2", hot_items_capacity=77)
    lead = a.begin_load("doc", "s", "x")
    wait = b.begin_load("doc", "s", "x")
    assert (lead.state, wait.state) == ("lead", "wait")
    assert a.finish_load(lead, "v")
    assert b.poll_load(wait).state == "hit"
    assert (b.telemetry.misses, b.telemetry.l2_hits) == (1, 0)
    assert _counted(a) == 1 and _counted(b) == 1
    assert b.memory_metrics()["mw_hit_ratio"] == 0.0


def test_a_value_found_again_after_taking_the_lease_is_counted_once(make_manager: Make) -> None:
    """Check-after-lock: a value that landed between a caller's L2 miss and its lease is served as that miss."""
    a, b = make_manager("a"), make_manager("b", node="n2", hot_items_capacity=77)
    lead = a.begin_load("doc", "s", "x")
    landed: list[bool] = []

    def land_first(point: str, _key: str | None) -> Act | None:
        if point != "protocol.acquire" or landed:
            return None
        return Act(lambda: landed.append(a.finish_load(lead, "v")))

    with injected(land_first):
        plan = b.begin_load("doc", "s", "x")
    assert landed == [True]
    assert plan.state == "hit" and b.telemetry.lease_rechecks == 1
    assert (b.telemetry.misses, b.telemetry.l2_hits) == (1, 0) and _counted(b) == 1
