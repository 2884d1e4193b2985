"""Mlt never hangs: a stopped (SIGSTOP) or restarted PostgreSQL and a locked SQLite end within the deadline.

These tests use only what the runtime had before issue 9: the error is checked as an ``MwError`` that
names the operation and the deadline; its exact class (``MltUnavailable``) and the fault seam are tested
in ``test_mlt_seam.py``. ``tools/against-base`` shows each failing on base on an assertion.

The PostgreSQL tests stop a throwaway server of their own (never the session's), so every call they make
runs in a helper thread joined with a bound: on code that hangs the test fails on that bound instead of
hanging, and the server is always resumed in ``finally`` so the thread can finish.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mw.errors import MwError
from mw.mlt import MISSING, open_store
from mw.mlt.postgres import PostgresMltStore
from pytest_mw.options import server_options
from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.factories import unavailable
from pytest_mw.servers.postgres_proc import PostgresProcess

DEADLINE_S = 1.0
DEFAULT_DEADLINE_S = 5.0  # MW_MLT_TIMEOUT_S's default, the deadline of the managers' stores
SLACK_S = 5.0  # generous for a busy machine: the point is that the call ends, with MltUnavailable
BOUND_S = DEADLINE_S + SLACK_S


# --- helpers ---------------------------------------------------------------------------------------------------------
class Outcome:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.elapsed = float("nan")


def start(call: Callable[[], Any]) -> tuple[threading.Thread, Outcome]:
    """Run ``call`` in a daemon thread; the outcome holds its value or error and how long it took."""
    outcome = Outcome()

    def run() -> None:
        started = time.monotonic()
        try:
            outcome.value = call()
        except BaseException as exc:
            outcome.error = exc
        outcome.elapsed = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def bounded(call: Callable[[], Any], bound_s: float = BOUND_S) -> Outcome:
    """Run ``call`` in a thread; fail (not hang) when it is still running after ``bound_s``."""
    thread, outcome = start(call)
    thread.join(bound_s)
    assert not thread.is_alive(), f"the call was still running after {bound_s:g}s: it hangs"
    return outcome


def assert_unavailable(outcome: Outcome, operation: str, deadline_s: float = DEADLINE_S) -> None:
    """The call ended in time with the runtime's own error (an ``MwError``), naming what and how long."""
    assert isinstance(outcome.error, MwError), f"{operation}: expected the store's MwError, got {outcome.error!r}"
    assert operation in str(outcome.error) and f"{deadline_s:g}s" in str(outcome.error)
    assert outcome.elapsed < deadline_s + SLACK_S


class StoppablePostgres:
    """A throwaway PostgreSQL whose processes (postmaster and backends) can be stopped, resumed and restarted."""

    def __init__(self, process: PostgresProcess) -> None:
        self.process = process
        self.dsn = process.dsn

    def _pids(self) -> list[int]:
        postmaster = int((self.process.datadir / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == postmaster:
                    pids.append(int(entry))
        return pids

    def signal(self, signum: int) -> None:
        for pid in self._pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue

    def stopped(self) -> _Stopped:
        return _Stopped(self)

    def restart(self) -> None:
        """``pg_ctl restart`` on the same port and data directory: every existing connection is closed."""
        datadir = self.process.datadir
        log = datadir.parent / "postgres.log"
        self.process._run("pg_ctl", "-D", str(datadir), "-l", str(log), "-m", "fast", "-w", "restart")


class _Stopped:
    """``with server.stopped():`` SIGSTOP every server process; SIGCONT on the way out, whatever happened."""

    def __init__(self, server: StoppablePostgres) -> None:
        self.server = server

    def __enter__(self) -> None:
        self.server.signal(signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        self.server.signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def postgres(request: pytest.FixtureRequest) -> Iterator[StoppablePostgres]:
    process = PostgresProcess()
    try:
        process.start()
    except ServerUnavailable as exc:
        unavailable("postgres", exc, server_options(request.config))
    server = StoppablePostgres(process)
    try:
        yield server
    finally:
        server.signal(signal.SIGCONT)
        process.stop()


@pytest.fixture
def pg_store(postgres: StoppablePostgres) -> Iterator[PostgresMltStore]:
    store = PostgresMltStore(postgres.dsn, timeout_s=DEADLINE_S)
    try:
        yield store
    finally:
        postgres.signal(signal.SIGCONT)
        store.close()


# --- PostgreSQL: stopped, resumed, restarted -------------------------------------------------------------------------
@pytest.mark.mw_real_servers
def test_a_stopped_server_ends_each_call_within_the_deadline(
    postgres: StoppablePostgres, pg_store: PostgresMltStore
) -> None:
    pg_store.put_item("doc", "s", "1", {"v": 1})
    pg_store.put_task({"id": 7, "status": "queued"})
    calls: dict[str, Callable[[], Any]] = {
        "get_item": lambda: pg_store.get_item("doc", "s", "1"),
        "get_task": lambda: pg_store.get_task(7),
        "put_item": lambda: pg_store.put_item("doc", "s", "1", {"v": 2}),
    }
    with postgres.stopped():
        for operation, call in calls.items():
            assert_unavailable(bounded(call), operation)
        # Twice more: the connections that timed out were discarded, the pool has none left to hand out.
        assert_unavailable(bounded(calls["get_item"]), "get_item")
        assert_unavailable(bounded(calls["get_task"]), "get_task")
    resumed = bounded(calls["get_item"])
    assert resumed.error is None and resumed.value in ({"v": 1}, {"v": 2})
    assert pg_store.put_item("doc", "s", "1", {"v": 3}) >= 2
    assert pg_store.get_item("doc", "s", "1") == {"v": 3}
    task = pg_store.get_task(7)
    assert task is not None and task["status"] == "queued"


@pytest.mark.mw_real_servers
def test_async_calls_on_a_stopped_server_end_within_the_deadline(
    postgres: StoppablePostgres, pg_store: PostgresMltStore
) -> None:
    pg_store.put_item("doc", "s", "1", "v")

    async def both() -> tuple[Any, Any]:
        return await pg_store.get_item_async("doc", "s", "1"), await pg_store.get_task_async(9)

    with postgres.stopped():
        assert_unavailable(bounded(lambda: asyncio.run(pg_store.get_item_async("doc", "s", "1"))), "get_item")
        assert_unavailable(bounded(lambda: asyncio.run(pg_store.get_task_async(9))), "get_task")
    resumed = bounded(lambda: asyncio.run(both()))
    assert resumed.error is None and resumed.value == ("v", None)


@pytest.mark.mw_real_servers
def test_opening_a_store_on_a_stopped_server_ends_within_the_deadline(postgres: StoppablePostgres) -> None:
    opened: list[PostgresMltStore] = []

    def open_one() -> None:
        opened.append(PostgresMltStore(postgres.dsn, timeout_s=DEADLINE_S))

    try:
        with postgres.stopped():
            assert_unavailable(bounded(open_one), "connect")
        # libpq's connect_timeout is whole seconds, at least 2: the pool may still be waiting on a frozen connect.
        assert bounded(open_one, DEADLINE_S + 2 * SLACK_S).error is None
    finally:
        for store in opened:
            store.close()


@pytest.mark.mw_real_servers
def test_pooled_connections_are_checked_after_a_restart(postgres: StoppablePostgres) -> None:
    store = PostgresMltStore(postgres.dsn, min_size=3, timeout_s=DEADLINE_S)
    try:
        store._pool.wait(timeout=10)  # three idle connections, all of which the restart kills
        store.put_item("doc", "s", "r", 1)
        store.put_task({"id": "r", "status": "queued"})
        postgres.restart()
        results = [bounded(call) for call in (
            lambda: store.get_item("doc", "s", "r"),
            lambda: store.get_task("r"),
            lambda: store.put_item("doc", "s", "r", 2),
            lambda: store.get_item("doc", "s", "r"),
        )]  # fmt: skip
        assert [r.error for r in results] == [None] * 4, "no call may fail after a restart"
        assert results[0].value == 1 and results[1].value["status"] == "queued"
        assert results[2].value == 2 and results[3].value == 2
    finally:
        store.close()


# --- SQLite: a database another connection keeps locked --------------------------------------------------------------
def test_a_locked_sqlite_database_ends_each_write_within_the_deadline(tmp_path: Path) -> None:
    """Default deadline (5 s): three writers racing for the lock share it, they do not queue for 3 x 5 s."""
    path = tmp_path / "mlt.db"
    store = open_store(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        store.put_item("doc", "s", "1", "v")
        other.execute("BEGIN IMMEDIATE")  # holds the write lock until rolled back
        writes: dict[str, Callable[[], Any]] = {
            "put_item": lambda: store.put_item("doc", "s", "1", "w"),
            "put_task": lambda: store.put_task({"id": 1, "status": "queued"}),
            "delete_item": lambda: store.delete_item("doc", "s", "1"),
        }
        running = {operation: start(call) for operation, call in writes.items()}
        end = time.monotonic() + DEFAULT_DEADLINE_S + SLACK_S
        for thread, _ in running.values():
            thread.join(max(0.0, end - time.monotonic()))
        still = [operation for operation, (thread, _) in running.items() if thread.is_alive()]
        assert not still, f"{still} still running after {DEFAULT_DEADLINE_S + SLACK_S:g}s: they hang"
        outcomes = {operation: outcome for operation, (_, outcome) in running.items()}
        for operation, outcome in outcomes.items():
            assert_unavailable(outcome, operation, DEFAULT_DEADLINE_S)
        assert store.get_item("doc", "s", "1") == "v", "readers are not blocked by a writer (WAL)"
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    assert store.put_item("doc", "s", "1", "w") == 2
    assert store.get_item("doc", "s", "1") == "w" and store.get_item("doc", "s", "2") is MISSING
    store.close()
