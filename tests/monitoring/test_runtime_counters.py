"""The runtime counters the export added: their edges, bounds and the async paths."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mw import MwManager
from mw import faults as F
from mw.errors import MltUnavailable
from mw.telemetry import Histogram, RecentLoads, TaskTTLs

Make = Callable[..., MwManager]


def test_histogram_buckets_are_upper_inclusive_as_prometheus_le() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    buckets, total, n = h.snapshot()
    assert [c for _, c in buckets] == [1, 3, 4], "0.1 is in le=0.1, 1.0 in le=1.0, 7.0 only in +Inf"
    assert total == pytest.approx(8.6) and n == 4
    with pytest.raises(ValueError, match="sorted"):
        Histogram((1.0, 0.5))


def test_recent_loads_are_bounded_and_never_invent_a_repeat() -> None:
    loads = RecentLoads(capacity=8)
    for i in range(8):
        loads.loaded(f"k{i}", expire_at=100.0 if i < 4 else 10.0, now=0.0)
    assert loads.repeated("k0", now=50.0) and not loads.repeated("k5", now=50.0), "k5 expired at 10"
    loads.loaded("new", 100.0, now=50.0)  # full: the expired ones go
    assert len(loads) == 5 and loads.repeated("new", 60.0) and loads.repeated("k1", 60.0)
    for i in range(20):
        loads.loaded(f"x{i}", 1000.0, now=50.0)
    assert len(loads) <= 8, "still bounded when nothing has expired"
    loads.forget(["x19"])
    assert not loads.repeated("x19", 60.0) and not loads.repeated("never-loaded", 0.0)


def test_a_status_whose_ttl_is_zero_is_exceeded_by_any_caching(make_manager: Make) -> None:
    a = make_manager("a", task_ttls_s={**make_manager("b").config.task_ttls_s, "failed": 0.0})
    ttls = TaskTTLs(("failed",))
    ttls.observe("global:item:task:by_id:1", {"id": 1, "status": "FAILED"}, 1.0, a.config)
    ttls.observe("global:item:doc:s:1", {"status": "failed"}, 99.0, a.config)  # not a task key
    ttls.observe("global:item:task:by_id:2", "not a row", 99.0, a.config)
    assert ttls.exceeded == {"failed": 1, "other": 0}
    assert ttls.ttls["failed"].snapshot()[2] == 1


def test_async_loads_count_mlt_errors_and_repeated_loads(make_manager: Make) -> None:
    a = make_manager("a", l1_max_items=998)

    def fail(point: str, _key: str | None) -> F.Action | None:
        return F.Fail(MltUnavailable("injected")) if point == "mlt.get_item" else None

    async def run() -> None:
        with F.injected(fail), pytest.raises(MltUnavailable):
            await a.get_or_load_async("doc", "s", "1")
        await a.get_or_load_async("doc", "s", "2", loader=lambda: {"v": 2}, ttl_s=60)
        key = "global:item:doc:s:2"
        a.l2.client.delete(a.l2.phys(key))
        a.clear()
        a.l1.pop(key)
        await a.get_or_load_async("doc", "s", "2", loader=lambda: {"v": 2}, ttl_s=60)

    asyncio.run(run())
    t = a.get_telemetry()
    assert t["mlt_errors"] == 1 and t["repeated_loads"] == 1 and t["loader_calls"] == 2
