"""Task rows in the cache: TTL by status, bounded by the row's own timestamps, invalidated everywhere.

TTL of a row (``MW_TASK_TTL_{STATUS}_S``; an unknown status takes ``MW_TASK_TTL_DEFAULT_S``):

* while the task is live (not completed, failed or cancelled), a ``lease_expires_at`` in the future
  and a ``run_after`` in the future each cap the TTL, since the row will change at that moment;
  a finished task is never shortened by a stale lease (the origin cut them to 1 s: defect 4);
* never below 1 s; a status TTL of 0 means "do not cache rows in this status".

Timestamps may be datetimes (naive ones are UTC), ISO-8601 strings or epoch numbers. An epoch number
must be finite and name an instant a ``datetime`` can hold (years 1 to 9999); anything else (``nan``,
``inf``, ``10**400``, a string that is not ISO-8601) is a :class:`TaskRowError` naming the field, checked
whatever the status, before any tier or the store is touched.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any

from mw import keys as K
from mw.config import MwConfig
from mw.errors import TaskRowError
from mw.refresh import jittered

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
MIN_TASK_TTL_S = 1.0
TIMESTAMP_FIELDS = ("lease_expires_at", "run_after")
"""The fields whose instants bound a live row's TTL."""

_UTC = dt.timezone.utc
MIN_EPOCH_S = dt.datetime.min.replace(tzinfo=_UTC).timestamp()
MAX_EPOCH_S = dt.datetime.max.replace(tzinfo=_UTC, microsecond=0).timestamp()
"""The epoch numbers a timestamp field may hold: 0001-01-01 to 9999-12-31T23:59:59 UTC."""

_EXPECTED = "expected a datetime, ISO-8601 string or epoch number"


def _shown(value: object) -> str:
    """``repr`` of a field value, short; a huge int is described (its repr may exceed the digit limit)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"<int of {value.bit_length()} bits>"
    return f"{value!r:.80}"


def to_epoch(value: object, field: str = "timestamp") -> float | None:
    """Epoch seconds of a datetime, ISO-8601 string or number; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TaskRowError(f"{field}={value!r}: {_EXPECTED}", field)
    if isinstance(value, (int, float)):
        try:
            at = float(value)
        except OverflowError:
            at = math.nan
        if not MIN_EPOCH_S <= at <= MAX_EPOCH_S:  # nan fails both comparisons
            raise TaskRowError(
                f"{field}={_shown(value)}: an epoch timestamp must be a finite number of seconds "
                f"in [{MIN_EPOCH_S:.0f}, {MAX_EPOCH_S:.0f}] (years 1 to 9999)",
                field,
            )
        return at
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise TaskRowError(f"{field}={_shown(value)}: not an ISO-8601 timestamp", field) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        try:
            return value.timestamp()
        except (ArithmeticError, ValueError, TypeError) as exc:  # a tzinfo whose offset is unusable
            raise TaskRowError(f"{field}={_shown(value)}: {type(exc).__name__}: {exc}", field) from None
    raise TaskRowError(f"{field}={_shown(value)}: {_EXPECTED}", field)


def row_task_id(row: Mapping[str, Any]) -> str:
    if not isinstance(row, Mapping):
        raise TaskRowError(f"a task row must be a mapping, not {type(row).__name__}")
    if row.get("id") is None:
        raise TaskRowError(f"a task row needs an 'id' (its fields: {', '.join(map(str, row))[:120]})", "id")
    return K.task_id_str(row["id"])


def row_status(row: Mapping[str, Any]) -> str:
    """The row's status, lower-cased (``""`` when it has none)."""
    status = row.get("status")
    if status is not None and not isinstance(status, str):
        raise TaskRowError(f"task {row.get('id')!r}: status must be a str, not {type(status).__name__}", "status")
    return (status or "").lower()


def row_instants(row: Mapping[str, Any]) -> dict[str, float | None]:
    """The row's :data:`TIMESTAMP_FIELDS` as epoch seconds; raises :class:`TaskRowError` naming a bad one."""
    return {field: to_epoch(row.get(field), field) for field in TIMESTAMP_FIELDS}


def check_row(row: Mapping[str, Any]) -> str:
    """Validate what the cache reads of a row (id, status, timestamps); return its task id."""
    task_id = row_task_id(row)
    row_status(row)
    row_instants(row)
    return task_id


def task_ttl_s(row: Mapping[str, Any], config: MwConfig, now: float) -> float:
    """The TTL a row gets in the cache (0: not cached)."""
    status = row_status(row)
    instants = row_instants(row)  # checked whatever the status: a bad field is bad input either way
    ttl = config.task_ttl_s(status)
    if ttl == 0:
        return 0.0
    if status not in TERMINAL_STATUSES:
        for at in instants.values():
            if at is not None and at > now:
                ttl = min(ttl, at - now)
    return max(ttl, MIN_TASK_TTL_S)


def cache_ttl_s(row: Mapping[str, Any], config: MwConfig, now: float, rand: Callable[[], float]) -> float:
    """The TTL a row is cached with: :func:`task_ttl_s` with the cluster's downward jitter, never under 1 s."""
    ttl = task_ttl_s(row, config, now)
    return max(MIN_TASK_TTL_S, jittered(ttl, config.ttl_jitter, rand)) if ttl > 0 else 0.0


TASK_META_FIELDS = frozenset({"version"})
"""What the store adds to a row (its version): metadata, not the caller's fields. ``get_task(id)`` leaves it out,
``get_task(id, with_meta=True)`` keeps it; a caller's own field of that name is not stored."""


def strip_task_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` without :data:`TASK_META_FIELDS`: the fields the caller wrote, and only those."""
    return {name: value for name, value in row.items() if name not in TASK_META_FIELDS}


def task_keys(task_id: object) -> list[str]:
    """Every key a task row is cached under: the row and its negative marker."""
    key = K.task_key(task_id)
    return [key, K.negative_key(key)]
