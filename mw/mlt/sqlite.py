"""The embedded Mlt: SQLite, in memory (``sqlite://``) or in a file (``sqlite:///path/to.db``).

One connection guarded by a lock: SQLite serialises writers anyway, and one connection keeps an
in-memory database shared by every manager of the cluster. File databases use WAL so that several
processes (the stampede tests) can read while one writes.

Every call ends within ``timeout_s``: waiting for this process's lock and for SQLite's lock (the busy
timeout, set to what is left of the deadline) share one deadline, and a database another connection
keeps locked ends in :class:`~mw.errors.MltUnavailable`, not in a hang or a raw ``sqlite3`` error.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from mw.errors import MltUnavailable
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
    kind TEXT NOT NULL, scope TEXT NOT NULL, item_id TEXT NOT NULL,
    value TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, scope, item_id)
);
CREATE TABLE IF NOT EXISTS mw_tasks (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, row TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1
);
"""


def sqlite_path(dsn: str) -> str:
    """``sqlite://`` -> ``:memory:``; ``sqlite:///tmp/x.db`` -> ``/tmp/x.db``."""
    rest = dsn[len("sqlite://") :]
    return ":memory:" if rest in ("", "/", "/:memory:", ":memory:") else rest


_BUSY_SLACK_MS = 50
"""Reset the busy timeout only when what is left of the deadline differs by more (a PRAGMA per call costs)."""


def _busy(exc: Exception) -> bool:
    """SQLite's busy or locked error; Python 3.10's ``sqlite3`` has no ``sqlite_errorname``, only the message."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is not None:
        return bool(name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")))
    return str(exc).startswith(("database is locked", "database table is locked"))


def _failure(operation: str, where: str, timeout_s: float, exc: Exception, *, in_doubt: bool = False) -> MltUnavailable:
    if _busy(exc):
        return timed_out(operation, where, timeout_s, "database still locked", in_doubt=in_doubt)
    return unavailable(operation, where, str(exc), in_doubt=in_doubt)


class SqliteMltStore(MltStore):
    def __init__(self, dsn: str = "sqlite://", *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(timeout_s)
        self.dsn = dsn
        path = sqlite_path(dsn)
        self._where = f"sqlite {path}"
        self._lock = threading.Lock()
        self._busy_ms = round(timeout_s * 1000)
        try:
            if INJECTORS:
                point("mlt.connect", self._where)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout_s)
            try:
                if path != ":memory:":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(_SCHEMA)
            except BaseException:
                self._conn.close()
                raise
        except (sqlite3.OperationalError, ConnectionError) as exc:
            raise _failure("connect", self._where, timeout_s, exc) from exc
        self._refs = 1
        self._share_key: str | None = None

    def _one(self, operation: str, key: str, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        deadline = time.monotonic() + self.timeout_s
        if not self._lock.acquire(timeout=self.timeout_s):
            raise timed_out(operation, self._where, self.timeout_s, "the store still busy in this process")
        ran = False
        try:
            self._count()
            if INJECTORS:
                point(f"mlt.{operation}", key)
            self._busy_until(operation, deadline)
            row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
            if INJECTORS:  # the statement ran (autocommit): a failure from here on loses only its reply
                ran = operation in WRITES
                point(f"mlt.{operation}.reply", key)
                if time.monotonic() >= deadline:  # a reply the seam delayed past the deadline is one never received
                    raise timed_out(operation, self._where, self.timeout_s, in_doubt=ran)
            return row
        except (sqlite3.OperationalError, OSError) as exc:
            raise _failure(operation, self._where, self.timeout_s, exc, in_doubt=ran) from exc
        finally:
            self._lock.release()

    def _busy_until(self, operation: str, deadline: float) -> None:
        """Let SQLite wait for another connection's lock only for what is left of the call's deadline."""
        left_ms = round((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise timed_out(operation, self._where, self.timeout_s)
        if abs(left_ms - self._busy_ms) > _BUSY_SLACK_MS:
            self._conn.execute(f"PRAGMA busy_timeout = {left_ms}")
            self._busy_ms = left_ms

    def get_item(self, kind: str, scope: str, item_id: str) -> Any:
        row = self._one(
            "get_item",
            item_key(kind, scope, item_id),
            "SELECT value FROM mw_items WHERE kind=? AND scope=? AND item_id=?",
            (kind, scope, item_id),
        )
        return MISSING if row is None else decode_value(row[0])

    def put_item(self, kind: str, scope: str, item_id: str, value: Any) -> int:
        row = self._one(
            "put_item",
            item_key(kind, scope, item_id),
            "INSERT INTO mw_items (kind, scope, item_id, value) VALUES (?, ?, ?, ?) "
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
            "DELETE FROM mw_items WHERE kind=? AND scope=? AND item_id=? RETURNING 1",
            (kind, scope, item_id),
        )
        return row is not None

    def _get_task(self, tid: str) -> dict[str, Any] | None:
        row = self._one("get_task", tid, "SELECT row, version FROM mw_tasks WHERE id=?", (tid,))
        return None if row is None else decode_row(row[0], int(row[1]))

    def _upsert_task(self, task_id: str, status: str, row_json: str) -> int:
        row = self._one(
            "put_task",
            task_id,
            "INSERT INTO mw_tasks (id, status, row) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status=excluded.status, row=excluded.row, version=mw_tasks.version+1 "
            "RETURNING version",
            (task_id, status, row_json),
        )
        assert row is not None
        return int(row[0])

    def _delete_task(self, task_id: str) -> bool:
        return self._one("delete_task", task_id, "DELETE FROM mw_tasks WHERE id=? RETURNING 1", (task_id,)) is not None

    def close(self) -> None:
        with _SHARED_LOCK:
            self._refs -= 1
            if self._refs > 0:
                return
            if self._share_key is not None and _SHARED.get(self._share_key) is self:
                del _SHARED[self._share_key]
        with self._lock:
            self._conn.close()


_SHARED: dict[str, SqliteMltStore] = {}
_SHARED_LOCK = threading.Lock()


def shared_memory_store(share_key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> SqliteMltStore:
    """The process's in-memory store for one namespace, shared by every cluster using it (closed with the last).

    The embedded L2 (fakeredis) is one per process; an in-memory Mlt per cluster would let two clusters
    that share L2 disagree about what exists (one could cache another's "absent"). The first opener's
    ``timeout_s`` holds for all.
    """
    with _SHARED_LOCK:
        store = _SHARED.get(share_key)
        if store is None:
            store = SqliteMltStore("sqlite://", timeout_s=timeout_s)
            store._refs = 0
            store._share_key = share_key
            _SHARED[share_key] = store
        store._refs += 1
        return store
