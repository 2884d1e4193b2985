"""Mlt, the long-term store behind the cache tiers: the interface every backend implements.

Two tables: typed items ``(kind, scope, item_id) -> value`` and task rows ``id -> row``. Values and
rows are stored as tagged JSON (:func:`mw.codec.dumps_json`) so datetime, UUID and Decimal fields come
back as they went in. Every statement that reads or writes counts in :attr:`MltStore.queries`: that
counter is how tests and the simulator prove the cache spares the database.

Every call ends within :attr:`MltStore.timeout_s` (``MW_MLT_TIMEOUT_S``): a store that does not answer
in time, or whose connection fails, raises :class:`~mw.errors.MltUnavailable` naming the operation and
the deadline, never a driver error and never a hang. Each call passes the fault seam point
``mlt.<operation>`` (:mod:`mw.faults`) with the item's ``kind:scope:item_id`` or the task id as key.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import threading
from collections.abc import Mapping
from typing import Any

from mw.codec import dumps_json, loads_json
from mw.errors import ConfigError, MltUnavailable
from mw.keys import check_text, task_id_str
from mw.tasks import check_row, strip_task_meta


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""Returned by :meth:`MltStore.get_item` when the store has no such item (``None`` is a storable value)."""

DEFAULT_TIMEOUT_S = 5.0
"""The default of ``MW_MLT_TIMEOUT_S``: the deadline of one call, connection checkout included."""


WRITES = frozenset({"put_item", "delete_item", "put_task", "delete_task"})
"""The operations a failure after sending leaves in doubt (a read that failed changed nothing)."""


def item_key(kind: str, scope: str, item_id: str) -> str:
    """The key an item's seam points carry; every call builds it first, so a part the database driver
    could not send (a lone surrogate) is a :class:`~mw.errors.KeyGrammarError` before any statement."""
    return f"{check_text('kind', kind)}:{check_text('scope', scope)}:{check_text('item_id', item_id)}"


def unavailable(operation: str, where: str, reason: str, *, in_doubt: bool = False) -> MltUnavailable:
    """The error of a call whose store failed: names the operation and the store; ``in_doubt`` if it had been sent."""
    return MltUnavailable(f"Mlt {operation} on {where}: {reason}", in_doubt=in_doubt)


def timed_out(
    operation: str, where: str, timeout_s: float, what: str = "no answer", *, in_doubt: bool = False
) -> MltUnavailable:
    """The error of a call that hit its deadline: names the operation, the store and the deadline."""
    return unavailable(operation, where, f"{what} within {timeout_s:g}s (MW_MLT_TIMEOUT_S)", in_doubt=in_doubt)


class MltStore(abc.ABC):
    """A long-term store. Implementations are thread-safe; async methods run the sync ones in a thread.

    The async forms run the whole sync call (its deadline and seam point included) in a worker thread:
    the deadline bounds that thread too, so closing the caller's loop never waits on a stopped server.
    """

    dsn: str

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ConfigError("MW_MLT_TIMEOUT_S", timeout_s, "a deadline must be a positive number of seconds")
        self.timeout_s = timeout_s
        self._query_lock = threading.Lock()
        self._query_total = 0

    @property
    def queries(self) -> int:
        """Statements issued since this store was opened (reads and writes)."""
        return self._query_total

    def _count(self) -> None:
        with self._query_lock:
            self._query_total += 1

    # --- items ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_item(self, kind: str, scope: str, item_id: str) -> Any:
        """The stored value, or :data:`MISSING`."""

    @abc.abstractmethod
    def put_item(self, kind: str, scope: str, item_id: str, value: Any) -> int:
        """Insert or replace; return the item's new version."""

    @abc.abstractmethod
    def delete_item(self, kind: str, scope: str, item_id: str) -> bool:
        """Remove; return whether it existed."""

    # --- tasks ---------------------------------------------------------------------------------------
    def get_task(self, task_id: object, *, with_meta: bool = False) -> dict[str, Any] | None:
        """The task row exactly as it was written, or ``None``; ``with_meta=True`` adds its ``version``."""
        row = self._get_task(task_id_str(task_id))
        return row if row is None or with_meta else strip_task_meta(row)

    @abc.abstractmethod
    def _get_task(self, task_id: str) -> dict[str, Any] | None:
        """The stored row with its ``version``, or ``None``."""

    @abc.abstractmethod
    def _upsert_task(self, task_id: str, status: str, row_json: str) -> int:
        """Write a row; return its new version."""

    @abc.abstractmethod
    def _delete_task(self, task_id: str) -> bool: ...

    def put_task(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or replace a task row as given; returns it with its new ``version`` (the write's receipt).

        ``version`` is the store's (:data:`mw.tasks.TASK_META_FIELDS`): a field of that name in ``row`` is not stored.
        """
        task_id, status = _row_identity(row)
        stored = strip_task_meta(row)
        version = self._upsert_task(task_id, status, dumps_json(stored))
        stored["version"] = version
        return stored

    def update_task_status(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        """Change a task's status (and other fields); ``None`` when there is no such task.

        Callers must invalidate the cached row afterwards; :meth:`mw.MwManager.update_task_status` does both.
        The new fields are checked (:func:`mw.tasks.check_row`) before the store is read.
        """
        check_row({**fields, "id": task_id, "status": status})
        row = self.get_task(task_id)
        if row is None:
            return None
        row.update(fields)
        row["status"] = status
        return self.put_task(row)

    def delete_task(self, task_id: object) -> bool:
        return self._delete_task(task_id_str(task_id))

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- async forms ---------------------------------------------------------------------------------
    async def get_item_async(self, kind: str, scope: str, item_id: str) -> Any:
        return await asyncio.to_thread(self.get_item, kind, scope, item_id)

    async def get_task_async(self, task_id: object, *, with_meta: bool = False) -> dict[str, Any] | None:
        return await asyncio.to_thread(functools.partial(self.get_task, task_id, with_meta=with_meta))


def _row_identity(row: Mapping[str, Any]) -> tuple[str, str]:
    """Id and status of a row about to be stored; a row the cache could not read back is refused here."""
    task_id = check_row(row)
    return task_id, (row.get("status") or "")


def decode_row(row_json: str, version: int) -> dict[str, Any]:
    row: dict[str, Any] = loads_json(row_json)
    row["version"] = version
    return row


def decode_value(value_json: str) -> Any:
    return loads_json(value_json)


def encode_value(value: Any) -> str:
    return dumps_json(value)
