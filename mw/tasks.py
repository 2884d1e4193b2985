"""Task rows in the cache: TTL by status, bounded by the row's own timestamps, invalidated everywhere.

TTL of a row (``MW_TASK_TTL_{STATUS}_S``; an unknown status takes ``MW_TASK_TTL_DEFAULT_S``):

* while the task is live (not completed, failed or cancelled), a ``lease_expires_at`` in the future
  and a ``run_after`` in the future each cap the TTL, since the row will change at that moment;
  a finished task is never shortened by a stale lease (the origin cut them to 1 s: defect 4);
* never below 1 s; a status TTL of 0 means "do not cache rows in this status".

Timestamps may be datetimes (naive ones are UTC), ISO-8601 strings or epoch numbers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from mw import keys as K
from mw.config import MwConfig
from mw.errors import TaskRowError
from mw.readthrough import ReadThrough
from mw.refresh import jittered

log = logging.getLogger("mw")

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
MIN_TASK_TTL_S = 1.0


def to_epoch(value: object, field: str = "timestamp") -> float | None:
    """Epoch seconds of a datetime, ISO-8601 string or number; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TaskRowError(f"{field}={value!r}: expected a datetime, ISO-8601 string or epoch number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise TaskRowError(f"{field}={value!r}: not an ISO-8601 timestamp") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise TaskRowError(f"{field}={value!r}: expected a datetime, ISO-8601 string or epoch number")


def row_task_id(row: Mapping[str, Any]) -> str:
    if not isinstance(row, Mapping):
        raise TaskRowError(f"a task row must be a mapping, not {type(row).__name__}")
    if row.get("id") is None:
        raise TaskRowError(f"a task row needs an 'id': {dict(row)!r:.120}")
    return K.task_id_str(row["id"])


def task_ttl_s(row: Mapping[str, Any], config: MwConfig, now: float) -> float:
    """The TTL a row gets in the cache (0: not cached)."""
    status = row.get("status")
    if status is not None and not isinstance(status, str):
        raise TaskRowError(f"task {row.get('id')!r}: status must be a str, not {type(status).__name__}")
    status = (status or "").lower()
    ttl = config.task_ttl_s(status)
    if ttl == 0:
        return 0.0
    if status not in TERMINAL_STATUSES:
        for field in ("lease_expires_at", "run_after"):
            at = to_epoch(row.get(field), field)
            if at is not None and at > now:
                ttl = min(ttl, at - now)
    return max(ttl, MIN_TASK_TTL_S)


class TaskCache(ReadThrough):
    """Task rows in the cache: the origin system's task helpers, fixed."""

    def _task_ttl(self, row: Mapping[str, Any]) -> float:
        ttl = task_ttl_s(row, self.config, self.clock())
        return max(MIN_TASK_TTL_S, jittered(ttl, self.config.ttl_jitter, self.cluster.rng.random)) if ttl > 0 else 0.0

    def _task_fill_ttl(self, row: Any) -> float:
        """TTL of a row loaded by ``get_task``, logged as the checklist's troubleshooting greps for it."""
        ttl = self._task_ttl(row)
        log.info("Cached task %s with TTL %ss", row.get("id"), f"{ttl:g}")
        return ttl

    def cache_task_row(self, row: Mapping[str, Any]) -> float:
        """Cache a task row under ``global:item:task:by_id:{id}`` with its status TTL; return the TTL used."""
        task_id = row_task_id(row)
        ttl = self._task_ttl(row)
        if not self.enabled:
            return 0.0
        key = K.task_key(task_id)
        if ttl == 0:
            self._delete_everywhere([key])
            log.info("Task %s in status %r is not cached (TTL 0)", task_id, row.get("status"))
            return 0.0
        self._write(key, dict(row), ttl)
        log.info("Cached task %s with TTL %ss", task_id, f"{ttl:g}")
        return ttl

    cache_task = cache_task_row

    def get_task(self, task_id: object) -> dict[str, Any] | None:
        """The task row: cache first, else Mlt's task table (one load cluster-wide); ``None`` if absent."""
        key = K.task_key(task_id)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        def load() -> Any:
            telemetry.mlt_loads += 1
            return mlt.get_task(task_id)

        row, hit = self._read_through(key, load, ttl_for=self._task_fill_ttl)
        self._count_task(hit)
        return row  # type: ignore[no-any-return]

    async def get_task_async(self, task_id: object) -> dict[str, Any] | None:
        key = K.task_key(task_id)
        mlt = self.cluster.mlt
        telemetry = self.telemetry

        async def load() -> Any:
            telemetry.mlt_loads += 1
            return await mlt.get_task_async(task_id)

        row, hit = await self._read_through_async(key, load, ttl_for=self._task_fill_ttl)
        self._count_task(hit)
        return row  # type: ignore[no-any-return]

    def _count_task(self, hit: bool) -> None:
        if hit:
            self.telemetry.task_cache_hits += 1
        else:
            self.telemetry.task_cache_misses += 1

    def _task_keys(self, task_id: object) -> list[str]:
        key = K.task_key(task_id)
        return [key, K.negative_key(key)]

    def _evicted(self, task_id: object) -> None:
        self.telemetry.task_evictions += 1
        log.info("Invalidated task %s in every tier (task_evictions=%d)", task_id, self.telemetry.task_evictions)

    def invalidate_task(self, task_id: object) -> None:
        """Drop a task row and its negative entry from every tier of every agent; counts a task eviction."""
        if self.enabled:
            self._delete_everywhere(self._task_keys(task_id))
        self._evicted(task_id)

    async def invalidate_task_async(self, task_id: object) -> None:
        if self.enabled:
            await self._delete_everywhere_async(self._task_keys(task_id))
        self._evicted(task_id)

    invalidate_task_cache = invalidate_task

    def update_task_status(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        """Change the status in Mlt, then invalidate the cached row everywhere. Returns the new row."""
        row = self.cluster.mlt.update_task_status(task_id, status, **fields)
        self.invalidate_task(task_id)
        return row

    async def update_task_status_async(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        row = await asyncio.to_thread(self.cluster.mlt.update_task_status, task_id, status, **fields)
        await self.invalidate_task_async(task_id)
        return row
