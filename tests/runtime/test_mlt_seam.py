"""The Mlt error class and fault seam issue 9 adds: ``MltUnavailable`` and the ``mlt.*`` seam points.

New API (``new_api``): ``tools/against-base`` reports these apart. That a stopped PostgreSQL or a locked
SQLite ends each call within the deadline is shown failing on base by ``test_mlt_faults.py``; here the
error those calls end with is checked to be exactly ``MltUnavailable``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from test_mlt_faults import (  # the stoppable server of the behaviour tests (same module, same servers)
    DEADLINE_S,
    DEFAULT_DEADLINE_S,
    SLACK_S,
    StoppablePostgres,
    assert_unavailable,
    bounded,
    pg_store,  # noqa: F401 (a fixture)
    postgres,  # noqa: F401 (a fixture)
)

from mw import MwManager
from mw.errors import MltUnavailable
from mw.faults import Delay, Drop, Fail, injected
from mw.mlt import MltStore, open_store
from mw.mlt.postgres import PostgresMltStore

pytestmark = pytest.mark.new_api


@pytest.mark.mw_real_servers
def test_a_stopped_server_ends_each_call_with_mlt_unavailable(
    postgres: StoppablePostgres,  # noqa: F811
    pg_store: PostgresMltStore,  # noqa: F811
) -> None:
    pg_store.put_item("doc", "s", "1", {"v": 1})
    with postgres.stopped():
        for call in (lambda: pg_store.get_item("doc", "s", "1"), lambda: asyncio.run(pg_store.get_task_async(9))):
            outcome = bounded(call)
            assert type(outcome.error) is MltUnavailable, repr(outcome.error)


def test_a_locked_sqlite_write_ends_with_mlt_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "mlt.db"
    store = open_store(f"sqlite:///{path}", timeout_s=DEADLINE_S)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        store.put_item("doc", "s", "1", "v")
        other.execute("BEGIN IMMEDIATE")
        writes: list[Callable[[], object]] = [
            lambda: store.put_item("doc", "s", "1", "w"),
            lambda: store.put_task({"id": 1, "status": "queued"}),
            lambda: store.delete_item("doc", "s", "1"),
        ]
        for write in writes:
            outcome = bounded(write, DEADLINE_S + SLACK_S)
            assert type(outcome.error) is MltUnavailable, repr(outcome.error)
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
        store.close()


# --- the fault seam, both stores -------------------------------------------------------------------------------------
def test_every_call_passes_its_seam_point(make_manager: Callable[..., MwManager]) -> None:
    store: MltStore = make_manager("a").mlt
    seen: list[tuple[str, str | None]] = []

    def record(name: str, key: str | None) -> None:
        if name.startswith("mlt.") and name != "mlt.connect":  # the pool may connect at any moment
            seen.append((name, key))

    with injected(record):
        store.put_item("doc", "s", "1", 1)
        store.get_item("doc", "s", "1")
        store.delete_item("doc", "s", "1")
        store.put_task({"id": 5, "status": "queued"})
        store.get_task(5)
        store.delete_task(5)
        asyncio.run(store.get_item_async("doc", "s", "2"))
        asyncio.run(store.get_task_async(6))
    calls = [
        ("mlt.put_item", "doc:s:1"),
        ("mlt.get_item", "doc:s:1"),
        ("mlt.delete_item", "doc:s:1"),
        ("mlt.put_task", "5"),
        ("mlt.get_task", "5"),
        ("mlt.delete_task", "5"),
        ("mlt.get_item", "doc:s:2"),
        ("mlt.get_task", "6"),
    ]
    assert seen == [point for name, key in calls for point in ((name, key), (f"{name}.reply", key))]


@pytest.mark.mw_real_servers
def test_a_write_sent_to_a_stopped_server_is_in_doubt_and_lands_when_it_resumes(
    postgres: StoppablePostgres,  # noqa: F811
    pg_store: PostgresMltStore,  # noqa: F811
) -> None:
    """Each pooled connection carries one statement to its stopped backend, which runs it on SIGCONT: those writers
    were told ``in_doubt``. Once the pool has none left (each timed-out one is discarded), a call sends nothing and
    is not in doubt. Every write in doubt landed, and only those."""
    assert pg_store.put_item("doc", "s", "doubt", "v0") == 1
    errors: list[BaseException | None] = []
    with postgres.stopped():
        while len(errors) < 10 and (not errors or getattr(errors[-1], "in_doubt", False)):
            errors.append(bounded(lambda: pg_store.put_item("doc", "s", "doubt", f"v{len(errors) + 1}")).error)
    assert all(isinstance(e, MltUnavailable) for e in errors), errors
    doubted = [e for e in errors if getattr(e, "in_doubt", False)]
    assert 1 <= len(doubted) == len(errors) - 1, errors  # the last found no connection
    # Resumed, each stopped backend runs the statement it holds: Mlt's version counts them all, soon.
    deadline = time.monotonic() + 10.0
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        query = "SELECT version FROM mw_items WHERE kind='doc' AND scope='s' AND item_id='doubt'"
        while (version := conn.execute(query).fetchone()[0]) < 1 + len(doubted) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert version == 1 + len(doubted)
    assert pg_store.put_item("doc", "s", "doubt", "last") == 2 + len(doubted)
    assert pg_store.get_item("doc", "s", "doubt") == "last"


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_a_write_the_seam_fails_before_sending_is_not_in_doubt(
    make_manager: Callable[..., MwManager], where: str, request: pytest.FixtureRequest
) -> None:
    store: MltStore = make_manager("a").mlt if where == "sqlite" else request.getfixturevalue("pg_store")
    store.put_item("doc", "s", "1", "v")
    for action in (Drop(), Fail(ConnectionResetError("reset (injected)"))):
        fault = injected(lambda name, key, action=action: action if name == "mlt.put_item" else None)
        with fault, pytest.raises(MltUnavailable) as caught:
            store.put_item("doc", "s", "1", "w")
        assert not caught.value.in_doubt, (action, caught.value)
    assert store.get_item("doc", "s", "1") == "v"


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_a_write_whose_reply_is_lost_is_in_doubt_and_landed(
    make_manager: Callable[..., MwManager], where: str, request: pytest.FixtureRequest
) -> None:
    """``mlt.<operation>.reply``: the statement ran; a fault there loses only its answer. A write is then in doubt
    (and did land), a read is not (it changed nothing)."""
    store: MltStore = make_manager("a").mlt if where == "sqlite" else request.getfixturevalue("pg_store")
    item = f"reply-{uuid.uuid4().hex}"  # the PostgreSQL store is shared by the module's tests
    assert store.put_item("doc", "s", item, "v") == 1
    for action in (Drop(), Fail(ConnectionResetError("reset (injected)"))):

        def lose(name: str, _key: str | None, action: Drop | Fail = action) -> Drop | Fail | None:
            return action if name.endswith(".reply") else None

        with injected(lose), pytest.raises(MltUnavailable) as written:
            store.put_item("doc", "s", item, "w")
        assert written.value.in_doubt, (action, written.value)
        with injected(lose), pytest.raises(MltUnavailable) as deleted:
            store.delete_item("doc", "s", f"{item}-gone")
        assert deleted.value.in_doubt
        with injected(lose), pytest.raises(MltUnavailable) as read:
            store.get_item("doc", "s", item)
        assert not read.value.in_doubt
    assert store.get_item("doc", "s", item) == "w" and store.put_item("doc", "s", item, "x") == 4  # both landed


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_a_reply_delayed_past_the_deadline_is_a_write_in_doubt(where: str, request: pytest.FixtureRequest) -> None:
    store: MltStore = (
        open_store("sqlite://", timeout_s=DEADLINE_S) if where == "sqlite" else request.getfixturevalue("pg_store")
    )
    item = f"late-{uuid.uuid4().hex}"
    late = Delay(DEADLINE_S + 0.1)
    with injected(lambda name, key: late if name == "mlt.put_item.reply" else None):
        outcome = bounded(lambda: store.put_item("doc", "s", item, "v"), DEADLINE_S + 0.1 + SLACK_S)
    assert_unavailable(outcome, "put_item", DEADLINE_S)
    assert getattr(outcome.error, "in_doubt", False), repr(outcome.error)
    assert store.get_item("doc", "s", item) == "v"  # it landed, and the store answers again


def test_in_doubt_survives_a_copy_and_is_off_by_default() -> None:
    import copy

    assert copy.copy(MltUnavailable("x", in_doubt=True)).in_doubt and not MltUnavailable("x").in_doubt


@pytest.mark.parametrize("action", [Drop(), Fail(ConnectionResetError("reset by peer (injected)"))], ids=repr)
def test_an_injected_connection_fault_is_mlt_unavailable_and_the_next_call_works(
    make_manager: Callable[..., MwManager], action: Drop | Fail
) -> None:
    store: MltStore = make_manager("a").mlt
    store.put_item("doc", "s", "1", "v")
    hits: list[str] = []

    def fault_once(name: str, key: str | None) -> Drop | Fail | None:
        if name == "mlt.get_item" and not hits:
            hits.append(name)
            return action
        return None

    with injected(fault_once):
        with pytest.raises(MltUnavailable, match="get_item"):
            store.get_item("doc", "s", "1")
        assert store.get_item("doc", "s", "1") == "v"
    assert hits == ["mlt.get_item"]


def test_a_delay_past_the_deadline_is_mlt_unavailable(make_manager: Callable[..., MwManager]) -> None:
    """The managers' stores keep the default deadline (5 s): a slow answer is cut there, the store stays usable."""
    store: MltStore = make_manager("a").mlt
    store.put_item("doc", "s", "1", "v")
    with injected(lambda name, key: Delay(DEFAULT_DEADLINE_S + 0.2) if name == "mlt.get_item" else None):
        outcome = bounded(lambda: store.get_item("doc", "s", "1"), DEFAULT_DEADLINE_S + SLACK_S)
    assert_unavailable(outcome, "get_item", DEFAULT_DEADLINE_S)
    assert type(outcome.error) is MltUnavailable, repr(outcome.error)
    assert store.get_item("doc", "s", "1") == "v"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_status_change_in_doubt_still_invalidates_every_tier(
    make_manager: Callable[..., MwManager], mode: str
) -> None:
    """An update whose write failed may still commit (a statement past its deadline): the cached row goes anyway,
    so when the commit lands no tier serves the old status."""
    a, b = make_manager("a"), make_manager("b", node="n2", l1_max_items=4321)
    a.mlt.put_task({"id": "t1", "status": "running"})
    assert a.get_task("t1")["status"] == b.get_task("t1")["status"] == "running"  # cached in L0, L1, L2

    def fail_write(name: str, key: str | None) -> Fail | None:
        return (
            Fail(ConnectionResetError("reset after the statement was sent (injected)"))
            if name == "mlt.put_task"
            else None
        )

    bus = b.cluster.started_bus
    assert bus is not None
    heard = bus.received
    with injected(fail_write), pytest.raises(MltUnavailable):
        if mode == "sync":
            a.update_task_status("t1", "completed")
        else:
            asyncio.run(a.update_task_status_async("t1", "completed"))
    # b's node hears of it over the bus, within the invalidation lag (not at once: a busy machine showed that).
    deadline = time.monotonic() + 10.0
    while bus.received <= heard and time.monotonic() < deadline:
        time.sleep(0.005)
    a.mlt.put_task({"id": "t1", "status": "completed"})  # the write in doubt lands, with no invalidation of its own
    assert a.get_task("t1")["status"] == "completed", "a still served the old status from its tiers"
    assert b.get_task("t1")["status"] == "completed", "b still served the old status (L2 or its node's L1)"
