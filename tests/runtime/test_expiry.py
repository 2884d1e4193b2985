"""Expiry travels with the value: no L0 or L1 copy outlives the item it copies (defect 7)."""

from __future__ import annotations

from collections.abc import Callable

from mw import ManualClock, MwManager
from mw import keys as K

Make = Callable[..., MwManager]


def test_l0_copy_expires_with_the_item(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a")
    a.set_global_item_typed("task", "by_id", "1", {"status": "running"}, ttl_s=10)
    key = K.task_key(1)
    assert a.l0.expire_at(key) == clock() + 10
    clock.advance(9.9)
    assert a.get_item_typed("task", "by_id", "1") == {"status": "running"}
    clock.advance(0.2)
    assert key not in a.l0
    assert a.get_item_typed("task", "by_id", "1") is None, "L0, L1 and L2 copies all expired logically"
    assert a.telemetry.misses == 1


def test_l1_ttl_is_capped_by_the_item_ttl(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", l1_ttl_s=30)
    a.set_global_item_typed("doc", "s", "short", "v", ttl_s=5)
    a.set_global_item_typed("doc", "s", "long", "v", ttl_s=600)
    assert a.l1.expire_at(K.global_typed_key("doc", "s", "short")) == clock() + 5
    assert a.l1.expire_at(K.global_typed_key("doc", "s", "long")) == clock() + 30


def test_l1_copy_expires_after_l1_ttl_and_refills_from_l2(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", l1_ttl_s=30)
    b = make_manager("b", l1_ttl_s=30)
    a.set_global_item_typed("doc", "s", "1", "v", ttl_s=600)
    clock.advance(31)
    assert b.get_item_typed("doc", "s", "1") == "v"
    assert b.telemetry.l2_hits == 1 and b.telemetry.l1_hits == 0
    assert b.l0.expire_at(K.global_typed_key("doc", "s", "1")) == clock() - 31 + 600, "L0 keeps the item's expiry"


def test_zero_l1_ttl_keeps_nothing_in_l1(make_manager: Make) -> None:
    a = make_manager("a", l1_ttl_s=0)
    a.set_global_item_typed("doc", "s", "1", "v")
    assert len(a.l1) == 0
    assert make_manager("b", l1_ttl_s=0).get_item_typed("doc", "s", "1") == "v"


def test_default_write_ttl_is_l2_ttl(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", l2_ttl_s=120)
    a.set_global_item_typed("doc", "s", "1", "v")
    assert 119_000 < a.l2.pttl(K.global_typed_key("doc", "s", "1")) <= 120_000
    assert a.l0.expire_at(K.global_typed_key("doc", "s", "1")) == clock() + 120


def test_set_item_has_no_expiry_but_is_bounded(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", l0_max_items=50)
    for i in range(500):
        a.set_item(f"scratch-{i}", i)
    clock.advance(10**6)
    assert len(a.l0) <= 50
    assert a.get_item("scratch-499") == 499
    assert a.l0.evictions >= 450 and a.memory_metrics()["mw_l0_evictions"] == a.l0.evictions


def test_l0_byte_bound_holds(make_manager: Make) -> None:
    a = make_manager("a", l0_max_bytes=20_000)
    for i in range(300):
        a.set_global_item_typed("blob", "s", str(i), "z" * 500)
        assert a.l0.nbytes <= 20_000
    assert 0 < len(a.l0) < 300
