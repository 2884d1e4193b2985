"""Telemetry: heartbeat fields, per-tier hits, hot items of real items only, quiet logs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mw
from mw import ManualClock, MwManager
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
    assert len(hh.top(10**6)) <= 16
    with pytest.raises(ValueError, match="0"):
        HeavyHitters(0)


def test_heavy_hitters_with_a_half_life_rank_what_is_read_now() -> None:
    clock = ManualClock(1_000.0)
    hh = HeavyHitters(capacity=8, half_life_s=10.0, clock=clock)
    for _ in range(100):
        hh.add("old")
    clock.advance(50)  # five half-lives: old's 100 reads count 3.125
    for _ in range(20):
        hh.add("new")
    assert hh.top(5) == [("new", 20), ("old", 3)]
    clock.advance(100)  # new 20 / 1024, old 3.125 / 1024: both under one read
    assert hh.top(5) == []
    hh.add("new")
    assert hh.top(5) == [("new", 1)], "a key still tracked counts again from its decayed count"
    with pytest.raises(ValueError, match="-1"):
        HeavyHitters(4, half_life_s=-1)


def test_an_add_that_another_rescale_overtakes_counts_in_the_new_scale() -> None:
    """The interleaving a rescale allows: an add has read the table, and before it writes, another caller moves the
    table to a new landmark. The clock seam lets the other caller in at that point; the first add must then count
    once, in the new scale (not in the old table, lost, nor with the old scale's weight of 2 ** 1000)."""
    now = [0.0]
    cut_in: list[str] = []

    def clock() -> float:
        if cut_in:
            now[0] += 1_000.0
            hh.add(cut_in.pop())
        return now[0]

    hh = HeavyHitters(capacity=8, half_life_s=1.0, clock=clock)
    for key in ("a", "a", "b"):
        hh.add(key)
    assert hh.top(5) == [("a", 2)]
    cut_in.append("b")
    hh.add("a")
    assert hh.top(5) == [("b", 2), ("a", 1)]


def test_heavy_hitters_decay_prunes_and_rescales_its_floor() -> None:
    """A pruned table's floor is in the scale of its landmark: a rescale must move it too, else a key admitted after
    the rescale starts from an old floor worth 2 ** 600 reads. And an idle spell of any length forgets, never fails."""
    clock = ManualClock(0.0)
    hh = HeavyHitters(capacity=1, half_life_s=1.0, clock=clock)
    for key, n in (("a", 50), ("b", 40), ("c", 30)):
        for _ in range(n):
            hh.add(key)
    assert hh.top(5) == [("c", 68), ("a", 50)], "c came third, pruned b (floor 40) and started from the floor"
    clock.advance(600)  # past the rescale point
    hh.add("e")
    hh.add("e")
    assert hh.top(5) == [("e", 2)], "the floor decayed with the counts"
    clock.advance(5_000)  # 2 ** 5000 overflows a float: the rescale must not compute it
    hh.add("f")
    hh.add("f")
    assert hh.top(5) == [("f", 2)]


def _decayed_model(reads: list[tuple[float, str]], now: float, half_life_s: float) -> dict[str, float]:
    """What the tracker should count with no pruning: every read of a key from its second one, the doorkeeper's
    first sighting weighed as the second read, each read halved per half-life since it happened."""
    seen: dict[str, list[float]] = {}
    for t, key in reads:
        seen.setdefault(key, []).append(t)
    model = {}
    for key, times in seen.items():
        if len(times) >= 2:
            weights = [2.0 ** (-(now - t) / half_life_s) for t in times[1:]]
            model[key] = sum(weights) + weights[0]
    return model


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.5, 3.0, 40.0, 7_000.0]), st.sampled_from("abcdef")), min_size=1, max_size=80
    )
)
def test_heavy_hitters_decay_matches_the_direct_sum_across_rescales(schedule: list[tuple[float, str]]) -> None:
    """Gaps of 700 half-lives force rescales to a new landmark; the counts must read as if none happened."""
    half_life_s = 10.0
    clock = ManualClock(0.0)
    hh = HeavyHitters(capacity=16, half_life_s=half_life_s, clock=clock)
    reads = []
    for dt, key in schedule:
        clock.advance(dt)
        hh.add(key)
        reads.append((clock(), key))
    model = _decayed_model(reads, clock(), half_life_s)
    got = dict(hh.top(100))
    for key, count in got.items():
        assert model[key] >= 1 - 1e-6 and abs(count - model[key]) <= 0.5 + 1e-6, (key, count, model[key])
    for key, expected in model.items():
        if expected >= 1 + 1e-6:
            assert key in got, (key, expected)


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
