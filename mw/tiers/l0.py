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
from mw.policy.s3fifo import S3FIFO, Entry

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


class L0Cache:
    """Per-agent cache. ``get`` is the hot path: one dict lookup, one expiry compare, no lock."""

    __slots__ = ("__weakref__", "_clock", "_lock", "_policy")

    def __init__(self, max_items: int, max_bytes: int | None, clock: Clock) -> None:
        self._policy = S3FIFO(max_items, max_bytes)
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._policy.get_entry(key)
        if entry is None:
            return default
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
            if self._policy.peek_entry(key) is entry:
                self._policy.pop(key)

    def set(self, key: str, value: Any, expire_at: float | None = None, size: int | None = None) -> None:
        stored: Any = value if type(value) in IMMUTABLE else _Mutable(private_copy(value))
        nbytes = approx_size(value) if size is None else size
        with self._lock:
            self._policy.set(key, stored, expire_at, nbytes)

    def expire_at(self, key: str) -> float | None:
        entry = self._policy.peek_entry(key)
        return None if entry is None else entry.expire_at

    def __contains__(self, key: str) -> bool:
        entry = self._policy.peek_entry(key)
        if entry is None:
            return False
        return entry.expire_at is None or entry.expire_at > self._clock()

    def pop(self, key: str) -> bool:
        with self._lock:
            return self._policy.pop(key) is not None

    def clear(self) -> int:
        with self._lock:
            return self._policy.clear()

    def keys(self) -> list[str]:
        return self._policy.keys()

    def __len__(self) -> int:
        return len(self._policy)

    @property
    def nbytes(self) -> int:
        return self._policy.nbytes

    @property
    def evictions(self) -> int:
        return self._policy.evictions

    @property
    def max_items(self) -> int:
        return self._policy.max_items

    @property
    def max_bytes(self) -> int | None:
        return self._policy.max_bytes
