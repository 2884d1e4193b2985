"""L0: one agent's in-process cache, bounded by items and bytes, evicting by S3-FIFO.

The origin's L0 kept entries forever (defect 7) and handed out shared mutable objects (defect 10).
Here every entry carries the expiry of the item it copies (a running task cached at L0 still expires
when its TTL says), the policy bounds count and bytes, and mutable values are stored as a private copy
and copied again on the way out, so no caller can change what another read will see.
"""

from __future__ import annotations

import copy
import datetime as dt
import sys
import threading
import uuid
from decimal import Decimal
from typing import Any

from mw.clock import Clock
from mw.observe import OBSERVERS, emit
from mw.policy.s3fifo import MAX_FREQ, S3FIFO, Entry

IMMUTABLE = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        uuid.UUID,
        Decimal,
    }
)


class _Mutable:
    """Marks a stored value that must be copied on every read."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def private_copy(value: Any) -> Any:
    """A copy that shares no mutable part with ``value``; immutables are returned as they are."""
    t = type(value)
    if t in IMMUTABLE:
        return value
    if t is dict:
        return {k: private_copy(v) for k, v in value.items()}
    if t is list:
        return [private_copy(v) for v in value]
    if t is tuple:
        return tuple(private_copy(v) for v in value)
    return copy.deepcopy(value)


def approx_size(value: Any) -> int:
    """Bytes a value holds, roughly: what the byte bound of L0 counts when no encoded size is known."""
    t = type(value)
    if t is dict:
        return sys.getsizeof(value) + sum(approx_size(k) + approx_size(v) for k, v in value.items())
    if t is list or t is tuple:
        return sys.getsizeof(value) + sum(approx_size(v) for v in value)
    return sys.getsizeof(value)


class L0Cache(S3FIFO):
    """Per-agent cache: S3-FIFO plus expiry and copy isolation.

    ``get`` is the hot path: one dict lookup, a frequency bump, one expiry compare, no lock. It is
    written out here rather than calling ``S3FIFO.get_entry`` because a Python call is a third of
    its cost. Mutations take a lock, so an agent's threads and tasks can share it.
    """

    def __init__(self, max_items: int, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(max_items, max_bytes)
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]  # L0 keys are str
        if OBSERVERS:
            emit("read", "L0", key)
        entry = self._lookup(key)
        if entry is None:
            return default
        if entry.freq < MAX_FREQ:
            entry.freq += 1
        exp = entry.expire_at
        if exp is not None and exp <= self._clock():
            self._drop_expired(key, entry)
            return default
        value = entry.value
        if type(value) is _Mutable:
            return private_copy(value.value)
        return value

    def _drop_expired(self, key: str, entry: Entry) -> None:
        with self._lock:
            if self._lookup(key) is entry:
                super().pop(key)

    def set(  # type: ignore[override]  # L0 keys are str; size defaults to an estimate
        self, key: str, value: Any, expire_at: float | None = None, size: int | None = None
    ) -> None:
        stored: Any = value if type(value) in IMMUTABLE else _Mutable(private_copy(value))
        nbytes = approx_size(value) if size is None else size
        if OBSERVERS:
            emit("write", "L0", key)
        with self._lock:
            super().set(key, stored, expire_at, nbytes)

    def expire_at(self, key: str) -> float | None:
        entry = self._lookup(key)
        return None if entry is None else entry.expire_at

    def __contains__(self, key: object) -> bool:
        entry = self._lookup(key)
        if entry is None:
            return False
        return entry.expire_at is None or entry.expire_at > self._clock()

    def pop(self, key: Any) -> Entry | None:
        if OBSERVERS:
            emit("delete", "L0", key)
        with self._lock:
            return super().pop(key)

    def clear(self) -> int:
        with self._lock:
            return super().clear()
