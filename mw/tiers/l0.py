"""L0: one agent's in-process cache, bounded by items and bytes, evicting by S3-FIFO.

The origin's L0 kept entries forever (defect 7) and handed out shared mutable objects (defect 10).
Here every entry carries the expiry of the item it copies (a running task cached at L0 still expires
when its TTL says), the policy bounds count and bytes, and mutable values are stored as a private copy
and copied again on the way out, so no caller can change what another read will see. The bytes are
those the objects cost in memory (:func:`memory_size`), not their encoded length.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import sys
import threading
import uuid
import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from mw.clock import Clock
from mw.codec import MAX_DEPTH, too_deep
from mw.observe import OBSERVERS, emit
from mw.policy.s3fifo import ENTRY_OVERHEAD, MAX_FREQ, S3FIFO, Entry

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


def private_copy(value: Any, depth: int = 0) -> Any:
    """A copy that shares no mutable part with ``value``; immutables are returned as they are.

    Containers nested deeper than :data:`mw.codec.MAX_DEPTH` (or containing themselves) raise
    :class:`~mw.errors.CodecError`, as the codec does, never ``RecursionError``.
    """
    t = type(value)
    if t in IMMUTABLE:
        return value
    if t is dict or t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise too_deep(value)
        depth += 1
        if t is dict:
            return {k: private_copy(v, depth) for k, v in value.items()}
        if t is list:
            return [private_copy(v, depth) for v in value]
        return tuple([private_copy(v, depth) for v in value])
    try:
        return copy.deepcopy(value)
    except RecursionError:
        raise too_deep(value) from None


_SAMPLE = 16
"""Elements of a container the estimate visits; a longer one is sampled at an even stride and scaled."""
_MAX_DEPTH = 32
"""Containers deeper than this are charged their own size only (the codec bounds depth on decode)."""
_sizeof = sys.getsizeof
_MUTABLE_SIZE = _sizeof(_Mutable(None))


def memory_size(value: Any, encoded_size: int | None = None) -> int:
    """Bytes ``value`` keeps alive in this process, estimated within 2x: what L0's byte bound charges.

    Why an estimate of memory and not the encoded size: a 16 MiB bound on encoded bytes held about
    111 MiB of objects (a ``float`` in a list costs 32 bytes for its few characters of JSON, an 8-letter
    ``str`` 57 for its 10, a small dict hundreds for its dozen).

    How: CPython's own sizes (``sys.getsizeof``) for each object, minus what the interpreter shares: small
    ints, ``bool``, ``None``, one-character strings and dict keys repeated across rows (the JSON decoder
    reuses one ``str`` per distinct key, and so does :func:`private_copy`), each charged once. A container
    of more than ``_SAMPLE`` elements is charged its own size plus its sampled elements scaled to its length,
    so the cost is bounded by the sample, not by the value (it runs on fill, never on hit). ``encoded_size``
    (the uncompressed payload length, when the codec knows it) is a floor: every encoded byte but base64
    and escapes stands for at least one byte of memory, which catches a large member the sample missed.
    Without it (L0-only ``set_item`` values), a container whose few large members all fall between the
    sample's strides is under-counted; the shapes of ``tests/runtime/test_bounds.py`` stay within 2x.
    """
    estimate = _leaf(value) if type(value) in _LEAVES else _estimate(value, set(), 0)
    if encoded_size is not None:
        estimate = max(estimate, encoded_size * 3 / 4)
    return int(estimate)


def _estimate(value: Any, keys: set[str], depth: int) -> float:
    t = type(value)
    if t is dict:
        n = len(value)
        own = _sizeof(value)
        if n == 0 or depth >= _MAX_DEPTH:
            return own
        items = value.items() if n <= _SAMPLE else itertools.islice(value.items(), 0, None, n // _SAMPLE)
        total = 0.0
        seen = 0
        for k, v in items:
            if type(k) is str:
                if k not in keys:
                    keys.add(k)
                    total += _sizeof(k)
            else:
                total += _estimate(k, keys, depth + 1)
            total += _leaf(v) if type(v) in _LEAVES else _estimate(v, keys, depth + 1)
            seen += 1
        return own + total * n / seen
    if t is list or t is tuple:
        n = len(value)
        own = _sizeof(value)
        if n == 0 or depth >= _MAX_DEPTH:
            return own
        sample = value if n <= _SAMPLE else value[:: n // _SAMPLE]
        total = 0.0
        for v in sample:
            total += _leaf(v) if type(v) in _LEAVES else _estimate(v, keys, depth + 1)
        return own + total * n / len(sample)
    return _leaf(value)


def _leaf(value: Any) -> int:
    """A value that holds no other: shared singletons and cached small ints and characters cost nothing."""
    t = type(value)
    if t is str:
        return 0 if len(value) < 2 else _sizeof(value)
    if t is int:
        return 0 if -5 <= value <= 256 else _sizeof(value)
    if t is float:
        return _FLOAT_SIZE
    if t is bool or value is None:
        return 0
    return _sizeof(value)


_LEAVES = frozenset({str, int, float, bool, type(None)})
_FLOAT_SIZE = _sizeof(0.0)


class HolderIndex:
    """Which L0s hold a key, so a write or delete visits only those, not every agent of the process.

    One per cluster. An L0 adds itself when it stores a key and removes itself when the key leaves
    (pop, eviction, expiry, clear). Guarded by a lock: a lost update here would let an L0 miss an
    invalidation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, set[L0Cache]] = {}

    def add(self, key: str, l0: L0Cache) -> None:
        with self._lock:
            holders = self._by_key.get(key)
            if holders is None:
                self._by_key[key] = {l0}
            else:
                holders.add(l0)

    def discard(self, key: str, l0: L0Cache) -> None:
        with self._lock:
            holders = self._by_key.get(key)
            if holders is not None:
                holders.discard(l0)
                if not holders:
                    del self._by_key[key]

    def take(self, key: str) -> set[L0Cache]:
        """Remove and return the holders of ``key``."""
        with self._lock:
            return self._by_key.pop(key, set())

    def __len__(self) -> int:
        return len(self._by_key)


def _leaves(index: HolderIndex, ref: weakref.ReferenceType[L0Cache]) -> Callable[[Entry], None]:
    """The eviction hook: an evicted key leaves the holder index. It holds the L0 weakly (a bound method
    would be a reference cycle, and a dropped agent's L0 would wait for a garbage-collector pass)."""

    def evicted(entry: Entry) -> None:
        l0 = ref()
        if l0 is not None:
            index.discard(entry.key, l0)

    return evicted


class L0Cache(S3FIFO):
    """Per-agent cache: S3-FIFO plus expiry and copy isolation.

    ``get`` is the hot path: one dict lookup, a frequency bump, one expiry compare, no lock. It is
    written out here rather than calling ``S3FIFO.get_entry`` because a Python call is a third of
    its cost. Mutations take a lock, so an agent's threads and tasks can share it.
    """

    def __init__(self, max_items: int, max_bytes: int | None, clock: Clock, index: HolderIndex | None = None) -> None:
        super().__init__(max_items, max_bytes, on_evict=None if index is None else _leaves(index, weakref.ref(self)))
        self._clock = clock
        self._lock = threading.Lock()
        self._index = index

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

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
                if self._index is not None:
                    self._index.discard(key, self)

    def set(  # type: ignore[override]  # L0 keys are str; size is the encoded size, if known
        self, key: str, value: Any, expire_at: float | None = None, size: int | None = None
    ) -> bool:
        """Keep a private copy; return whether it was kept (not when it alone exceeds the byte bound).

        The entry is charged :func:`memory_size` of the value plus the entry's own overhead; ``size``, the
        uncompressed encoded length the codec reports, only serves as the estimate's floor.
        """
        stored: Any = value if type(value) in IMMUTABLE else _Mutable(private_copy(value))
        nbytes = ENTRY_OVERHEAD + len(key) + memory_size(value, size)
        if stored is not value:
            nbytes += _MUTABLE_SIZE
        if OBSERVERS:
            emit("write", "L0", key)
        with self._lock:
            kept = super().set(key, stored, expire_at, nbytes)
            if self._index is not None:
                if kept:
                    self._index.add(key, self)
                else:  # too big for the bound: an older copy was dropped, and the index must forget it
                    self._index.discard(key, self)
        return kept

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
            entry = super().pop(key)
            if entry is not None and self._index is not None:
                self._index.discard(key, self)
            return entry

    def clear(self) -> int:
        with self._lock:
            if self._index is not None:
                for key in self.keys():
                    self._index.discard(key, self)
            return super().clear()
