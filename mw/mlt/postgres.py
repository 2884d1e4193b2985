"""Mlt on PostgreSQL through psycopg 3 and a connection pool, every call bounded by a client-side deadline.

One pool per cluster (managers built from equal configuration share it). ``jsonb`` would reorder keys
and lose our type tags' exactness for Decimal, so values are ``text`` holding tagged JSON.

Why a client-side deadline: a server-side ``statement_timeout`` cannot stop a server that is itself
stopped (SIGSTOP, a frozen VM); psycopg waits for an answer without limit, and the cancel request it
sends on an interrupt goes to a postmaster that is stopped too. TCP keepalives do not help either: the
kernel of a stopped server still acknowledges them. So each call gets one deadline (``timeout_s``) covering
checkout and statement: the checkout waits at most until it, and a process-wide watchdog thread shuts
the socket down when a statement is still running at it. The driver's wait then wakes on end-of-file
and fails at once; the broken connection is closed and the pool replaces it. New connections use
``connect_timeout`` (libpq's, whole seconds, at least 2) so pool workers do not hang either.

Why a checkout health check instead of the pool's ``check``: after a server restart every idle
connection is dead, and the pool's check costs a round trip per checkout and backs off a second or more
between failed checks. An idle connection in autocommit mode has nothing to read, so data or
end-of-file waiting on its socket (a restart's termination notice) marks it dead at no cost before the
statement's first byte is sent; it is discarded and the next one is tried within the same deadline.

Why ``reconnect_timeout=0``: the pool's background reconnection backs off exponentially (up to minutes)
and grows only one connection at a time, so after a long outage callers would wait out its backoff
although the server is back. With 0 a failed connect is retried once at once and then given up; a
caller waiting for a connection asks for a new one every ``_CHECKOUT_SLICE_S``, so connections are
made on demand, as soon as the server answers.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from mw.faults import INJECTORS, point
from mw.mlt.base import (
    DEFAULT_TIMEOUT_S,
    MISSING,
    WRITES,
    MltStore,
    decode_row,
    decode_value,
    encode_value,
    item_key,
    timed_out,
    unavailable,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mw_items (
    kind text NOT NULL, scope text NOT NULL, item_id text NOT NULL,
    value text NOT NULL, version bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, scope, item_id)
);
CREATE TABLE IF NOT EXISTS mw_tasks (
    id text PRIMARY KEY, status text NOT NULL, row text NOT NULL, version bigint NOT NULL DEFAULT 1
);
"""

_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
"""What a lost, refused, reset or timed-out connection raises (``PoolTimeout`` included)."""

_CHECKOUT_SLICE_S = 0.25
"""A checkout waits in slices: each new wait asks the pool to grow, should its last attempt have given up."""


class _Alarm:
    __slots__ = ("conn", "deadline", "fired")

    def __init__(self, conn: psycopg.Connection[Any], deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.fired = False

    def fire(self) -> None:
        """Shut the socket down (on a duplicate fd, the connection keeps its own): the driver's wait ends."""
        self.fired = True
        with contextlib.suppress(OSError, psycopg.Error):
            sock = socket.socket(fileno=os.dup(self.conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()


class _Watchdog:
    """One daemon thread per process that fires the alarms of statements still running at their deadline.

    Alarms are armed and disarmed under one lock and fired under it, so an alarm never fires after its
    statement returned (the connection may already serve another call by then).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh; also run in a forked child, which has no watchdog thread and maybe a lock held."""
        self._cond = threading.Condition()
        self._alarms: set[_Alarm] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def armed(self, conn: psycopg.Connection[Any], deadline: float) -> Iterator[_Alarm]:
        alarm = _Alarm(conn, deadline)
        with self._cond:
            self._alarms.add(alarm)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mw-mlt-watchdog", daemon=True)
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
        try:
            yield alarm
        finally:
            with self._cond:
                self._alarms.discard(alarm)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for alarm in [a for a in self._alarms if a.deadline <= now]:
                    self._alarms.discard(alarm)
                    alarm.fire()
                self._wake_at = min((a.deadline for a in self._alarms), default=math.inf)
                self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset)


def _is_stale(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle pooled connection is dead: closed, or something (end-of-file, a notice) waits on it."""
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _where(dsn: str) -> str:
    """The store's name in messages: host, port and database, never the password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (unparsable DSN)"
    return f"postgresql {params.get('host', '')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


class PostgresMltStore(MltStore):
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(timeout_s)
        self.dsn = dsn
        self._where = _where(dsn)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=True,
            reconnect_timeout=0.0,
            configure=self._configure,
            kwargs={"autocommit": True, "connect_timeout": max(2, math.ceil(timeout_s))},
        )
        try:
            with self._connection("connect", None, seam=False) as conn:
                # CREATE TABLE IF NOT EXISTS races between processes; an advisory lock makes it safe.
                conn.execute("SELECT pg_advisory_lock(7201)")
                try:
                    conn.execute(_SCHEMA)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(7201)")
        except BaseException:
            self._pool.close()
            raise

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Run by the pool on each new connection: the ``mlt.connect`` seam point."""
        if INJECTORS:
            try:
                point("mlt.connect", self._where, drop=conn.close)
            except BaseException:
                conn.close()
                raise

    def _checkout(self, operation: str, deadline: float) -> psycopg.Connection[Any]:
        """A live pooled connection before ``deadline``; dead ones (a restart) are discarded on the way."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out(operation, self._where, self.timeout_s, "no connection")
            try:
                conn = self._pool.getconn(timeout=min(remaining, _CHECKOUT_SLICE_S))
            except PoolTimeout:
                continue
            except _CONNECTION_ERRORS as exc:
                raise unavailable(operation, self._where, f"no connection: {exc}") from exc
            if not _is_stale(conn):
                return conn
            conn.close()
            self._pool.putconn(conn)

    @contextlib.contextmanager
    def _connection(self, operation: str, key: str | None, *, seam: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one call, its statements bounded by the call's deadline; a broken one is discarded."""
        deadline = time.monotonic() + self.timeout_s
        conn = self._checkout(operation, deadline)
        alarm: _Alarm | None = None
        sent = False
        try:
            if seam and INJECTORS:
                point(f"mlt.{operation}", key, drop=conn.close)
            if time.monotonic() >= deadline:
                raise timed_out(operation, self._where, self.timeout_s)
            sent = operation in WRITES and not conn.closed  # a dropped connection (the seam) sends nothing
            with _WATCHDOG.armed(conn, deadline) as alarm:
                yield conn
            if alarm.fired:  # answered at the deadline, but its socket is shut down now
                conn.close()
            if seam and INJECTORS:  # the statement ran (autocommit): a failure from here on loses only its reply
                point(f"mlt.{operation}.reply", key, drop=conn.close)
                if time.monotonic() >= deadline:  # a reply the seam delayed past the deadline is one never received
                    raise timed_out(operation, self._where, self.timeout_s, in_doubt=sent)
        except _CONNECTION_ERRORS as exc:
            conn.close()
            if alarm is not None and alarm.fired:
                raise timed_out(operation, self._where, self.timeout_s, in_doubt=sent) from exc
            raise unavailable(operation, self._where, f"connection failed: {exc}", in_doubt=sent) from exc
        finally:
            self._pool.putconn(conn)

    def _one(self, operation: str, key: str | None, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._count()
        with self._connection(operation, key) as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

    def get_item(self, kind: str, scope: str, item_id: str) -> Any:
        row = self._one(
            "get_item",
            item_key(kind, scope, item_id),
            "SELECT value FROM mw_items WHERE kind=%s AND scope=%s AND item_id=%s",
            (kind, scope, item_id),
        )
        return MISSING if row is None else decode_value(row[0])

    def put_item(self, kind: str, scope: str, item_id: str, value: Any) -> int:
        row = self._one(
            "put_item",
            item_key(kind, scope, item_id),
            "INSERT INTO mw_items (kind, scope, item_id, value) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (kind, scope, item_id) DO UPDATE SET value=excluded.value, version=mw_items.version+1 "
            "RETURNING version",
            (kind, scope, item_id, encode_value(value)),
        )
        assert row is not None
        return int(row[0])

    def delete_item(self, kind: str, scope: str, item_id: str) -> bool:
        row = self._one(
            "delete_item",
            item_key(kind, scope, item_id),
            "DELETE FROM mw_items WHERE kind=%s AND scope=%s AND item_id=%s RETURNING 1",
            (kind, scope, item_id),
        )
        return row is not None

    def _get_task(self, tid: str) -> dict[str, Any] | None:
        row = self._one("get_task", tid, "SELECT row, version FROM mw_tasks WHERE id=%s", (tid,))
        return None if row is None else decode_row(row[0], int(row[1]))

    def _upsert_task(self, task_id: str, status: str, row_json: str) -> int:
        row = self._one(
            "put_task",
            task_id,
            "INSERT INTO mw_tasks (id, status, row) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET status=excluded.status, row=excluded.row, "
            "version=mw_tasks.version+1 RETURNING version",
            (task_id, status, row_json),
        )
        assert row is not None
        return int(row[0])

    def _delete_task(self, task_id: str) -> bool:
        return self._one("delete_task", task_id, "DELETE FROM mw_tasks WHERE id=%s RETURNING 1", (task_id,)) is not None

    def close(self) -> None:
        self._pool.close()
