"""A task row comes back as its writer wrote it: no ``version`` or ``updated_at`` it never wrote; the store's
metadata only on request (``with_meta=True``), which the simulator's stale-read oracle reads versions from."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest

from mw import MwManager

Make = Callable[..., MwManager]

ROW = {
    "id": "t-1",
    "status": "running",
    "owner": "agent-7",
    "cost": Decimal("0.25"),
    "lease_expires_at": dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc),
    "steps": [1, {"two": 2}],
}


def test_rows_round_trip_unchanged_through_every_path(make_manager: Make) -> None:
    a, b = make_manager("a", ttl_jitter=0.0), make_manager("b", node="n2", ttl_jitter=0.0)
    a.mlt.put_task(ROW)
    assert a.mlt.get_task("t-1") == ROW
    assert a.get_task("t-1") == ROW  # a load from Mlt
    assert a.get_task("t-1") == ROW  # an L0 hit
    assert b.get_task("t-1") == ROW  # an L2 hit on another node
    assert asyncio.run(b.get_task_async("t-1")) == ROW
    assert a.get_task("t-1", with_meta=True) == {**ROW, "version": 1}
    assert asyncio.run(a.get_task_async("t-1", with_meta=True)) == {**ROW, "version": 1}
    updated = a.update_task_status("t-1", "completed")
    assert updated == {**ROW, "status": "completed", "version": 2}
    assert b.get_task("t-1") == {**ROW, "status": "completed"}
    assert b.get_task("t-1", with_meta=True)["version"] == 2  # type: ignore[index]


@pytest.mark.new_api
def test_a_row_cached_by_hand_round_trips_too(make_manager: Make) -> None:
    a = make_manager("a")
    a.cache_task_row(ROW)
    got = a.get_task("t-1")
    assert got == ROW
    got["owner"] = "someone else"  # type: ignore[index]
    assert a.get_task("t-1") == ROW, "get_task answers a copy: a caller's change does not reach the cache"
    assert a.get_task("t-1", with_meta=True) == ROW, "a row cached without a version has no metadata to add"


@pytest.mark.new_api
def test_split_phase_reads_keep_the_version(make_manager: Make) -> None:
    """``begin_task`` (the simulator's path) hands out the row with its version, for the stale-read oracle."""
    a = make_manager("a")
    a.mlt.put_task(ROW)
    plan = a.begin_task("t-1")
    assert plan.state == "lead"
    a.finish_load(plan, a.mlt.get_task("t-1", with_meta=True))
    hit = a.begin_task("t-1")
    assert hit.state == "hit" and hit.value["version"] == 1
    assert a.get_task("t-1") == ROW
