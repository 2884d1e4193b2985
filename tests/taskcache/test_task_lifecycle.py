"""Task caching: status TTLs, lease/run_after bounds, the lifecycle cache -> invalidate -> miss -> reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from mw import ManualClock, MwManager, TaskRowError
from mw import keys as K
from mw.tasks import task_ttl_s, to_epoch

Make = Callable[..., MwManager]
UTC = dt.timezone.utc


def _row(status: str, **extra: object) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "status": status, **extra}


@pytest.mark.parametrize(
    ("status", "ttl"),
    [
        ("created", 10),
        ("queued", 10),
        ("running", 10),
        ("retry", 20),
        ("completed", 600),
        ("failed", 300),
        ("cancelled", 300),
        ("archived", 30),
        ("", 30),
    ],
)
def test_status_ttl_is_the_real_redis_pttl(make_manager: Make, status: str, ttl: int) -> None:
    a = make_manager("a", ttl_jitter=0.0)
    row = _row(status)
    assert a.cache_task_row(row) == ttl
    pttl = a.l2.pttl(K.task_key(row["id"]))
    assert ttl * 1000 - 200 < pttl <= ttl * 1000


@pytest.mark.parametrize(("status", "ttl"), [("running", 10), ("completed", 600), ("failed", 300)])
def test_a_row_loaded_in_steps_gets_its_status_ttl_and_counts_as_get_task(
    make_manager: Make, status: str, ttl: int
) -> None:
    """``begin_task``/``finish_load`` (the simulator's path) apply the runtime's status TTL, not the caller's."""
    a, b = make_manager("a", ttl_jitter=0.0), make_manager("b", node="n2", ttl_jitter=0.0)
    row = _row(status)
    plan = a.begin_task(row["id"])
    assert plan.state == "lead" and a.finish_load(plan, row)
    pttl = a.l2.pttl(K.task_key(row["id"]))
    assert ttl * 1000 - 200 < pttl <= ttl * 1000
    assert b.begin_task(row["id"]).value == row
    assert (a.telemetry.task_cache_misses, a.telemetry.task_cache_hits) == (1, 0)
    assert (b.telemetry.task_cache_misses, b.telemetry.task_cache_hits) == (0, 1)
    assert b.begin_task("absent-task").state == "lead" and b.telemetry.task_cache_misses == 1


def test_ttl_env_overrides_reach_the_cache(make_manager: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    from mw import MwConfig

    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "30")
    monkeypatch.setenv("MW_TASK_TTL_COMPLETED_S", "0")
    env = MwConfig.from_env()
    a = make_manager("a", task_ttls_s=dict(env.task_ttls_s), ttl_jitter=0.0)
    running, done = _row("running"), _row("completed")
    assert a.cache_task_row(running) == 30
    assert a.cache_task_row(done) == 0, "a status TTL of 0 means: not cached"
    assert a.l2.get(K.task_key(done["id"])) is None


def test_live_lease_and_future_run_after_bound_the_ttl(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", ttl_jitter=0.0)
    now = dt.datetime.fromtimestamp(clock(), UTC)
    leased = _row("running", lease_expires_at=now + dt.timedelta(seconds=4))
    later = _row("retry", run_after=(now + dt.timedelta(seconds=7)).isoformat())
    expired_lease = _row("running", lease_expires_at=now - dt.timedelta(seconds=50))
    almost = _row("queued", run_after=clock() + 0.2)
    assert a.cache_task_row(leased) == pytest.approx(4)
    assert a.cache_task_row(later) == pytest.approx(7)
    assert a.cache_task_row(expired_lease) == 10, "a lease in the past does not bound"
    assert a.cache_task_row(almost) == 1, "never below 1 s"
    assert 3_000 < a.l2.pttl(K.task_key(leased["id"])) <= 4_000


def test_finished_task_is_not_cut_short_by_its_old_lease(make_manager: Make, clock: ManualClock) -> None:
    """Origin defect 4: the lease bound shortened finished tasks' TTL to 1 s."""
    a = make_manager("a", ttl_jitter=0.0)
    now = dt.datetime.fromtimestamp(clock(), UTC)
    done = _row("completed", lease_expires_at=now + dt.timedelta(seconds=2), run_after=now + dt.timedelta(seconds=1))
    assert a.cache_task_row(done) == 600


def test_jitter_only_shortens(make_manager: Make) -> None:
    a = make_manager("a", ttl_jitter=0.2)
    ttls = [a.cache_task_row(_row("completed")) for _ in range(40)]
    assert all(480 <= t <= 600 for t in ttls) and len(set(ttls)) > 30


def test_lifecycle_cache_invalidate_miss_reload_across_agents(make_manager: Make, caplog) -> None:
    a, b, c = make_manager("a"), make_manager("b"), make_manager("c", node="n2")
    tid = uuid.uuid4()
    row = {
        "id": tid,
        "status": "running",
        "started": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "cost": Decimal("1.25"),
        "note": None,
    }
    stored = a.mlt.put_task(row)
    with caplog.at_level(logging.INFO, logger="mw"):
        a.cache_task_row(stored)
    assert f"Cached task {tid} with TTL" in caplog.text
    q0 = a.mlt.queries
    assert b.get_task(tid) == row and c.get_task(str(tid)) == row, "rows round-trip unchanged"
    assert a.mlt.queries == q0 and b.telemetry.task_cache_hits == 1 and c.telemetry.task_cache_hits == 1
    assert c.get_task(tid, with_meta=True) == stored == {**row, "version": 1}

    with caplog.at_level(logging.INFO, logger="mw"):
        updated = c.update_task_status(tid, "completed", result={"ok": True})
    assert updated is not None and updated["version"] == 2
    assert c.telemetry.task_evictions == 1 and "task_evictions=1" in caplog.text
    for m in (a, b, c):
        assert K.task_key(tid) not in m.l0 and m.l1.get(K.task_key(tid)) is None
    assert a.l2.get(K.task_key(tid)) is None

    assert b.get_task(tid)["status"] == "completed"
    assert b.telemetry.task_cache_misses == 1 and a.mlt.queries == q0 + 3  # get + put (update) + reload
    assert a.get_task(tid)["status"] == "completed" and a.mlt.queries == q0 + 3


def test_get_task_returns_the_row_not_an_envelope(make_manager: Make) -> None:
    """Origin defect 3."""
    a = make_manager("a")
    tid = uuid.uuid4()
    a.mlt.put_task({"id": tid, "status": "queued", "when": dt.datetime(2026, 2, 2)})
    row = a.get_task(tid)
    assert isinstance(row, dict) and row["id"] == tid and row["when"] == dt.datetime(2026, 2, 2)
    assert make_manager("b", node="n2").get_task(tid) == row


def test_async_task_api_from_inside_a_running_loop(make_manager: Make) -> None:
    """Origin defect 5: invalidation from a running loop cleared only L0."""
    a, b = make_manager("a"), make_manager("b", node="n2")
    tid = "t-async"
    a.mlt.put_task({"id": tid, "status": "running"})

    async def main() -> tuple[object, ...]:
        first = await a.get_task_async(tid)
        assert await b.get_task_async(tid) == first
        a.invalidate_task(tid)  # the sync form, called inside a running loop
        gone = (K.task_key(tid) in b.l0, b.l1.get(K.task_key(tid)), a.l2.get(K.task_key(tid)))
        await b.get_task_async(tid)
        await b.update_task_status_async(tid, "failed")
        return gone, (await a.get_task_async(tid))["status"]

    gone, status = asyncio.run(main())
    assert gone == (False, None, None) and status == "failed"


@pytest.mark.parametrize("row", [{}, {"status": "running"}, {"id": None}, {"id": 1, "status": 3}, "row"])
def test_rows_that_cannot_be_cached_raise(make_manager: Make, row: object) -> None:
    with pytest.raises(TaskRowError):
        make_manager("a").cache_task_row(row)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 1, 1), 1767225600.0),
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
        (1767225600, 1767225600.0),
        (None, None),
    ],
)
def test_timestamps_in_every_accepted_form(value: object, expected: float | None) -> None:
    assert to_epoch(value) == expected


def test_bad_timestamp_names_the_field() -> None:
    from mw import MwConfig

    with pytest.raises(TaskRowError, match="lease_expires_at"):
        task_ttl_s({"id": 1, "status": "running", "lease_expires_at": "soon"}, MwConfig(), 0.0)
