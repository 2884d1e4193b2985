"""One cache alone over a whole trace: the L0 policy (:class:`mw.policy.S3FIFO`) next to a plain LRU.

The fleet's hit ratio mixes many things (agents splitting the trace, L1 and L2, TTLs); this is the figure a cache
paper would print for the same trace: one cache of L0's capacity, every request a lookup and a miss an insert. Two
pairs are kept: bounded by items only (sizes ignored, libCacheSim's ``--ignore-obj-size``), and, when the trace has
sizes, bounded as L0 is, by its items *and* bytes with each object charged its size (an object larger than the byte
bound is never admitted, as in L0). Both policies see the same requests in the same order.

Sizes here are the trace's bytes (an object keeps the size of its first request, the value Mlt is seeded with),
not the memory L0 charges for a value (its ``memory_size`` plus an entry overhead), so the byte-bounded pair is the
trace's figure, close to but not the fleet's L0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Protocol

from mw.policy import S3FIFO


class Cache(Protocol):
    def access(self, key: Hashable, size: int = 1) -> bool:
        """Look ``key`` up and, on a miss, admit it; whether it was a hit."""


class LRU:
    """Least recently used, bounded by items and optionally bytes; a hit moves the key to the young end."""

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._sizes: OrderedDict[Hashable, int] = OrderedDict()

    def access(self, key: Hashable, size: int = 1) -> bool:
        """Look ``key`` up; on a miss insert it, evicting the oldest. Return whether it was a hit."""
        sizes = self._sizes
        if key in sizes:
            sizes.move_to_end(key)
            return True
        if self.max_bytes is not None and size > self.max_bytes:
            return False
        max_bytes = self.max_bytes
        while sizes and (len(sizes) >= self.max_items or (max_bytes is not None and self.nbytes + size > max_bytes)):
            _, evicted = sizes.popitem(last=False)
            self.nbytes -= evicted
        sizes[key] = size
        self.nbytes += size
        return False

    def __len__(self) -> int:
        return len(self._sizes)

    def keys(self) -> list[Hashable]:
        """Resident keys, oldest first."""
        return list(self._sizes)


class _Policy:
    """The L0 policy behind the same ``access`` as :class:`LRU`."""

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        self.cache = S3FIFO(max_items, max_bytes)

    def access(self, key: Hashable, size: int = 1) -> bool:
        cache = self.cache
        if cache.get_entry(key) is not None:
            return True
        cache.set(key, None, size=size)
        return False


class _Tally:
    __slots__ = ("byte_hits", "hits")

    def __init__(self) -> None:
        self.hits = 0
        self.byte_hits = 0


class SingleCaches:
    """LRU and S3-FIFO of L0's capacity fed the same requests; :meth:`summary` is what ``result.json`` carries."""

    def __init__(self, max_items: int, max_bytes: int | None, sized: bool) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes if sized else None
        self.requests = 0
        self.bytes_requested = 0
        self._items: dict[str, Cache] = {"lru": LRU(max_items), "s3fifo": _Policy(max_items)}
        self._bytes: dict[str, Cache] = {}
        if sized:
            self._bytes = {"lru": LRU(max_items, max_bytes), "s3fifo": _Policy(max_items, max_bytes)}
        self._tally = {f"{bound}:{name}": _Tally() for bound in ("items", "bytes") for name in ("lru", "s3fifo")}

    def access(self, key: Hashable, size: int | None) -> None:
        self.requests += 1
        tally = self._tally
        for name, cache in self._items.items():
            if cache.access(key):
                tally[f"items:{name}"].hits += 1
        if self._bytes:
            n = 1 if size is None else size
            self.bytes_requested += n
            for name, cache in self._bytes.items():
                if cache.access(key, n):
                    t = tally[f"bytes:{name}"]
                    t.hits += 1
                    t.byte_hits += n

    def summary(self) -> dict[str, Any]:
        def ratio(n: int, of: int) -> float:
            return round(n / of, 6) if of else 0.0

        tally, n = self._tally, self.requests
        out: dict[str, Any] = {
            "requests": n,
            "items": {
                "max_items": self.max_items,
                "lru": {"hits": tally["items:lru"].hits, "hit_ratio": ratio(tally["items:lru"].hits, n)},
                "s3fifo": {"hits": tally["items:s3fifo"].hits, "hit_ratio": ratio(tally["items:s3fifo"].hits, n)},
            },
        }
        if self._bytes:
            out["bytes"] = {"max_items": self.max_items, "max_bytes": self.max_bytes}
            for name in ("lru", "s3fifo"):
                t = tally[f"bytes:{name}"]
                out["bytes"][name] = {
                    "hits": t.hits,
                    "hit_ratio": ratio(t.hits, n),
                    "byte_hit_ratio": ratio(t.byte_hits, self.bytes_requested),
                }
        for bound in ("items", "bytes"):
            if bound in out:
                out[bound]["s3fifo_minus_lru"] = ratio(out[bound]["s3fifo"]["hits"] - out[bound]["lru"]["hits"], n)
        return out
