"""L1: the node tier, shared by every agent on one node (one process, or one simulated node).

It holds encoded envelopes, not objects: each agent that fills its L0 from here decodes its own copy,
so agents never share a mutable value. An entry lives ``MW_L1_TTL_S`` at most and never longer than
the item it copies (the origin's L1 ignored shorter L2 TTLs: defect 7).

It is bounded by items (``MW_L1_MAX_ITEMS``) and by bytes (``MW_L1_MAX_BYTES``): an envelope costs its
length plus its key's and a fixed per-entry overhead (:data:`~mw.policy.s3fifo.ENTRY_OVERHEAD` and the
``bytes`` header), so the bound is what the tier really holds. Without the byte bound, 1,500 values of
600 KB held 887 MiB.
"""

from __future__ import annotations

import sys
import threading

from mw.clock import Clock
from mw.config import MwConfig
from mw.observe import OBSERVERS, emit
from mw.policy.s3fifo import ENTRY_OVERHEAD, S3FIFO

_BYTES_HEADER = sys.getsizeof(b"")


def entry_cost(key: str, data: bytes) -> int:
    """What one L1 entry holds in memory: the envelope, its key and the entry around them."""
    return ENTRY_OVERHEAD + len(key) + _BYTES_HEADER + len(data)


class L1Cache:
    __slots__ = ("_clock", "_lock", "_policy", "ttl_s")

    def __init__(self, max_items: int, ttl_s: float, clock: Clock, max_bytes: int | None = None) -> None:
        self._policy = S3FIFO(max_items, max_bytes)
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: MwConfig, clock: Clock) -> L1Cache:
        """The node tier ``config`` asks for: its item bound, byte bound and TTL."""
        return cls(config.l1_max_items, config.l1_ttl_s, clock, config.l1_max_bytes)

    def get(self, key: str) -> bytes | None:
        if OBSERVERS:
            emit("read", "L1", key)
        with self._lock:
            entry = self._policy.get_entry(key)
            if entry is None:
                return None
            if entry.expire_at is not None and entry.expire_at <= self._clock():
                self._policy.pop(key)
                return None
            data: bytes = entry.value  # type: ignore[assignment]
            return data

    async def get_async(self, key: str) -> bytes | None:
        """In process there is nothing to await; a node tier elsewhere (Ray) awaits its reply here."""
        return self.get(key)

    def set(self, key: str, data: bytes, item_expire_at: float | None) -> float | None:
        """Store a copy; return the expiry it got, or ``None`` when no copy was kept.

        No copy is kept when the TTL allows none or when the entry alone exceeds the byte bound (then an
        older copy under ``key`` is dropped too: it must not outlive this write).
        """
        if self.ttl_s <= 0:
            return None
        expire_at = self._clock() + self.ttl_s
        if item_expire_at is not None and item_expire_at < expire_at:
            expire_at = item_expire_at
        if OBSERVERS:
            emit("write", "L1", key)
        with self._lock:
            stored = self._policy.set(key, data, expire_at, entry_cost(key, data))
        return expire_at if stored else None

    def expire_at(self, key: str) -> float | None:
        entry = self._policy.peek_entry(key)
        return None if entry is None else entry.expire_at

    def pop(self, key: str) -> bool:
        if OBSERVERS:
            emit("delete", "L1", key)
        with self._lock:
            return self._policy.pop(key) is not None

    def clear(self) -> int:
        with self._lock:
            return self._policy.clear()

    def __len__(self) -> int:
        return len(self._policy)

    @property
    def nbytes(self) -> int:
        """Bytes held, as the byte bound counts them (see :func:`entry_cost`)."""
        return self._policy.nbytes

    @property
    def max_items(self) -> int:
        return self._policy.max_items

    @property
    def max_bytes(self) -> int | None:
        return self._policy.max_bytes

    @property
    def evictions(self) -> int:
        return self._policy.evictions
