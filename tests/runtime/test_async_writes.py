"""Every write has an async twin with the same effect, its L2 command awaited on the caller's loop.

On a real Redis a sync write inside a coroutine blocks the loop for the round trip; the twins do not. Each twin
shares its logic with the sync form (``mw.writes``: one plan, one completion), so these tests compare the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mw import MwManager, faults
from mw import keys as K

Make = Callable[..., MwManager]
TASK = {"id": "t-9", "status": "running"}


def _run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


@pytest.mark.new_api
@pytest.mark.parametrize(
    "form", [pytest.param("sync", marks=pytest.mark.guard("the sync form the twin is compared with")), "async"]
)
def test_typed_and_untyped_writes_reach_every_tier_and_agent(make_manager: Make, form: str) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    a.set_global_item_typed("doc", "s", "1", "old")
    assert b.get_item_typed("doc", "s", "1") == "old"  # b's node now holds a copy the write must replace
    if form == "async":
        _run(a.set_global_item_typed_async("doc", "s", "1", "new", ttl_s=30))
        _run(a.set_global_item_async("cfg", {"n": 1}, ttl_s=30))
    else:
        a.set_global_item_typed("doc", "s", "1", "new", ttl_s=30)
        a.set_global_item("cfg", {"n": 1}, ttl_s=30)
    key = K.global_typed_key("doc", "s", "1")
    assert b.get_item_typed("doc", "s", "1") == "new" and b.get_item("cfg") == {"n": 1}
    assert key in a.l0 and a.l1.get(key) is not None and 29_000 < a.l2.pttl(key) <= 30_000
    if form == "async":
        _run(a.set_global_item_typed_async("doc", "s", "1", "gone", ttl_s=0))  # TTL 0 deletes, as sync does
    else:
        a.set_global_item_typed("doc", "s", "1", "gone", ttl_s=0)
    assert b.get_item_typed("doc", "s", "1") is None and a.l2.get(key) is None


@pytest.mark.new_api
def test_task_rows_negative_marks_claims_and_l0_items(make_manager: Make) -> None:
    a, b = make_manager("a", ttl_jitter=0.0), make_manager("b", node="n2", ttl_jitter=0.0)
    assert _run(a.cache_task_row_async(TASK)) == a.config.task_ttl_s("running")
    assert b.get_task("t-9") == TASK
    assert _run(a.cache_task_async({**TASK, "status": "completed"})) == a.config.task_ttl_s("completed")
    assert b.get_task("t-9") == {**TASK, "status": "completed"}
    assert _run(a.update_task_status_async("t-9", "failed")) is None  # not in Mlt: nothing to update
    _run(a.invalidate_task_async("t-9"))
    assert b.l2.get(K.task_key("t-9")) is None

    _run(a.set_negative_cache_async("doc", "s", "missing"))
    assert b.check_negative_cache("doc", "s", "missing")
    _run(a.set_global_item_typed_async("doc", "s", "missing", 1))  # a write clears the mark
    assert not b.check_negative_cache("doc", "s", "missing")

    claim = K.global_typed_key("job", "run", "1")
    assert _run(a.try_set_inflight_async(claim, 5)) is True
    assert b.try_set_inflight(claim, 5) is False
    assert _run(b.release_inflight_async(claim)) is False, "never someone else's claim"
    assert _run(a.release_inflight_async(claim)) is True
    assert _run(b.try_set_inflight_async(claim, 5)) is True

    _run(a.set_item_async("scratch", 1))
    _run(a.set_organ_item_typed_async("note", "n1", 2))
    assert a.get_item("scratch") == 1 and a.l0.get(K.organ_typed_key("a", "note", "n1")) == 2
    with pytest.raises(TypeError, match="L0-only"):
        _run(a.set_item_async("scratch", 1, ttl_s=5))


@pytest.mark.new_api
def test_an_async_write_l2_did_not_take_is_served_nowhere(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    a.set_global_item_typed("doc", "s", "2", "old")
    assert b.get_item_typed("doc", "s", "2") == "old"

    def down(point: str, key: str | None) -> faults.Action | None:
        return faults.Fail(ConnectionError("injected")) if point == "l2.set" else None

    with faults.injected(down):
        _run(a.set_global_item_typed_async("doc", "s", "2", "new"))
    key = K.global_typed_key("doc", "s", "2")
    assert a.telemetry.l2_write_failures == 1
    assert key not in a.l0 and key not in b.l0 and b.l1.get(key) is None


@pytest.mark.new_api
@pytest.mark.mw_real_servers
@pytest.mark.parametrize("backend", ["real"], indirect=True)
def test_async_writes_leave_the_loop_free_on_a_real_redis(make_manager: Make) -> None:
    """While a twin's L2 command is in flight (held 50 ms at the seam) other coroutines run: it is awaited."""
    a = make_manager("a")
    a.set_global_item_typed("warm", "s", "1", 0)  # the loop's client exists before anything is measured

    def slow(point: str, key: str | None) -> faults.Action | None:
        return faults.Delay(0.05) if point in ("l2.set", "l2.delete", "l2.set_nx") else None

    writes: dict[str, Callable[[], Awaitable[Any]]] = {
        "set_global_item_typed_async": lambda: a.set_global_item_typed_async("doc", "s", "1", 1),
        "set_global_item_async": lambda: a.set_global_item_async("cfg", 1),
        "cache_task_row_async": lambda: a.cache_task_row_async(TASK),
        "set_negative_cache_async": lambda: a.set_negative_cache_async("doc", "s", "absent"),
        "try_set_inflight_async": lambda: a.try_set_inflight_async("global:item:job:run:1", 5),
        "invalidate_task_async": lambda: a.invalidate_task_async("t-9"),
        "del_global_key_async": lambda: a.del_global_key_async("cfg"),
    }

    async def main() -> dict[str, int]:
        ticks = {name: 0 for name in writes}
        writing: list[str] = []

        async def ticker() -> None:
            while True:
                if writing:
                    ticks[writing[0]] += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        with faults.injected(slow):
            for name, call in writes.items():
                writing.append(name)
                await call()
                writing.clear()
        task.cancel()
        return ticks

    ticks = asyncio.run(main())
    assert [name for name, n in ticks.items() if n == 0] == []
