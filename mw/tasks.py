"""Task rows in the cache: TTL by status, bounded by the row's own timestamps, invalidated everywhere.

TTL of a row (``MW_TASK_TTL_{STATUS}_S``; an unknown status takes ``MW_TASK_TTL_DEFAULT_S``):

* while the task is live (not completed, failed or cancelled), a ``lease_expires_at`` in the future
  and a ``run_after`` in the future each cap the TTL, since the row will change at that moment;
  a finished task is never shortened by a stale lease (the origin cut them to 1 s: defect 4);
* never below 1 s; a status TTL of 0 means "do not cache rows in this status".

Timestamps may be datetimes (naive ones are UTC), ISO-8601 strings or epoch numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from mw import keys as K
from mw.config import MwConfig
from mw.errors import TaskRowError
from mw.refresh import jittered

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


def cache_ttl_s(row: Mapping[str, Any], config: MwConfig, now: float, rand: Callable[[], float]) -> float:
    """The TTL a row is cached with: :func:`task_ttl_s` with the cluster's downward jitter, never under 1 s."""
    ttl = task_ttl_s(row, config, now)
    return max(MIN_TASK_TTL_S, jittered(ttl, config.ttl_jitter, rand)) if ttl > 0 else 0.0


def task_keys(task_id: object) -> list[str]:
    """Every key a task row is cached under: the row and its negative marker."""
    key = K.task_key(task_id)
    return [key, K.negative_key(key)]
