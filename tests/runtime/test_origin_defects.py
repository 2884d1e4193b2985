"""One test per defect of the origin system (shared/notes/origin-system.md), each failing on that defect."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from mw import ManualClock, MwConfig, MwManager
from mw import keys as K

Make = Callable[..., MwManager]


def test_1_task_rows_are_written_read_and_invalidated_under_one_key(make_manager: Make) -> None:
    from mw.observe import add_observer

    a, b = make_manager("a"), make_manager("b", node="n2")
    seen: list[tuple[str, str, str]] = []
    remove = add_observer(lambda e: seen.append((e.op, e.tier, e.key)))
    try:
        a.cache_task_row({"id": 123, "status": "running"})
        b.get_task(123)
        b.invalidate_task(123)
    finally:
        remove()
    item_keys = {key for _, tier, key in seen if tier in ("L0", "L1", "L2")}
    assert item_keys == {"global:item:task:by_id:123"}
    assert {op for op, tier, _ in seen if tier == "L2"} == {"write", "read", "delete"}


def test_2_a_miss_marks_nothing_absent_and_caching_clears_the_mark(make_manager: Make) -> None:
    a = make_manager("a")
    assert a.get_item("task:by_id:9") is None, "a miss that asked no database"
    assert a.l2.scan_keys("mw:neg:*") == []
    assert a.get_task(9) is None
    assert a.l2.scan_keys("mw:neg:*") == [K.negative_key(K.task_key(9))], "absence confirmed by Mlt"
    a.cache_task_row({"id": 9, "status": "queued"})
    assert a.l2.scan_keys("mw:neg:*") == []


def test_3_get_task_returns_the_row(make_manager: Make) -> None:
    a = make_manager("a")
    a.cache_task_row({"id": "r", "status": "queued"})
    row = make_manager("b", node="n2").get_task("r")
    assert row == {"id": "r", "status": "queued"}


def test_4_lease_bound_does_not_cut_finished_tasks(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", ttl_jitter=0.0)
    assert a.cache_task_row({"id": 4, "status": "completed", "lease_expires_at": clock() + 1}) == 600


def test_5_invalidation_inside_a_running_loop_clears_every_tier(make_manager: Make) -> None:
    import asyncio

    a, b = make_manager("a"), make_manager("b", node="n2")
    a.cache_task_row({"id": 5, "status": "running"})
    assert b.get_task(5) is not None

    async def invalidate_inside_loop() -> None:
        a.invalidate_task(5)

    asyncio.run(invalidate_inside_loop())
    assert a.l2.get(K.task_key(5)) is None and b.l1.get(K.task_key(5)) is None and K.task_key(5) not in b.l0


def test_6_inflight_claims_are_exclusive_and_none_is_not_a_hit(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    assert a.try_set_inflight("global:item:x", 5) and not b.try_set_inflight("global:item:x", 5)
    a.set_global_item("y", 1)
    a.del_global_key("y")
    assert a.get_item("y") is None and a.telemetry.l0_hits == 0 and a.telemetry.misses == 1


def test_7_l0_bounded_l1_capped_zero_ttl_kept(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", l0_max_items=10, l1_ttl_s=30)
    for i in range(100):
        a.set_global_item_typed("doc", "s", str(i), i, ttl_s=5)
    assert len(a.l0) <= 10
    assert a.l1.expire_at(K.global_typed_key("doc", "s", "99")) == clock() + 5
    assert MwConfig.from_env({"MW_L2_TTL_S": "0"}).l2_ttl_s == 0


def test_8_a_key_just_set_again_survives_eviction_pressure(make_manager: Make) -> None:
    a = make_manager("a", l0_max_items=20)
    for i in range(500):
        a.set_global_item_typed("doc", "s", "keep", i)
        a.get_item_typed("doc", "s", "keep")
        a.set_global_item_typed("doc", "s", f"churn-{i}", i)
    assert a.get_item_typed("doc", "s", "keep") == 499 and a.telemetry.l0_hits >= 499


def test_9_hot_items_ignore_internal_probes_and_use_one_format(make_manager: Make) -> None:
    a = make_manager("a")
    for _ in range(5):
        a.get_task(7)
        a.check_negative_cache("task", "by_id", "7")
    assert [name for name, _ in a.get_hot_items()] == ["task:by_id:7"]


def test_10_failed_writes_are_counted_and_values_are_not_shared(make_manager: Make, dead_l2: dict[str, Any]) -> None:
    a = make_manager("a", redis_timeout_s=0.1, pubsub=False, **dead_l2)
    a.set_global_item_typed("doc", "s", "1", {"k": [1]})
    assert a.telemetry.l2_write_failures == 1
    a.mlt.put_item("doc", "s", "1", {"k": [1]})  # the write never reached L2, so the writer does not serve it
    got = a.get_item_typed("doc", "s", "1")
    got["k"].append(2)
    assert a.get_item_typed("doc", "s", "1") == {"k": [1]}


def test_11_a_pickle_in_the_cache_is_never_unpickled(make_manager: Make) -> None:
    a = make_manager("a")

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (pytest.fail, ("unpickled!",))

    a.l2.client.set(a.l2.phys(K.global_typed_key("doc", "s", "p")), pickle.dumps(Boom()))
    assert a.get_item_typed("doc", "s", "p") is None and a.telemetry.corrupt_entries == 1


def test_12_documented_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_L1_TTL_S", "3")
    monkeypatch.setenv("MW_L2_TTL_S", "4")
    monkeypatch.setenv("MW_ENABLED", "false")
    c = MwConfig.from_env()
    assert (c.l1_ttl_s, c.l2_ttl_s, c.enabled) == (3, 4, False)


def test_13_miss_is_debug_and_cached_task_is_info(make_manager: Make, caplog: pytest.LogCaptureFixture) -> None:
    a = make_manager("a")
    with caplog.at_level(logging.INFO, logger="mw"):
        a.get_item_typed("doc", "s", "nothing")
        a.cache_task_row({"id": 13, "status": "running"})
    assert "MISS" not in caplog.text and "Cached task 13 with TTL" in caplog.text
