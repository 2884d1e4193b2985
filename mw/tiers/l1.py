"""L1: the node tier, shared by every agent on one node (one process, or one simulated node).

It holds encoded envelopes, not objects: each agent that fills its L0 from here decodes its own copy,
so agents never share a mutable value. An entry lives ``MW_L1_TTL_S`` at most and never longer than
the item it copies (the origin's L1 ignored shorter L2 TTLs: defect 7).
"""

from __future__ import annotations

import threading

from mw.clock import Clock
from mw.observe import OBSERVERS, emit
from mw.policy.s3fifo import S3FIFO


class L1Cache:
    __slots__ = ("_clock", "_lock", "_policy", "ttl_s")

    def __init__(self, max_items: int, ttl_s: float, clock: Clock) -> None:
        self._policy = S3FIFO(max_items)
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

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
        """Store a copy; return the expiry it got, or ``None`` when the TTL allows no copy at all."""
        if self.ttl_s <= 0:
            return None
        expire_at = self._clock() + self.ttl_s
        if item_expire_at is not None and item_expire_at < expire_at:
            expire_at = item_expire_at
        if OBSERVERS:
            emit("write", "L1", key)
        with self._lock:
            self._policy.set(key, data, expire_at, len(data))
        return expire_at

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
