"""S3-FIFO: three FIFO queues that beat LRU on skewed traffic (Yang et al., SOSP'23).

Protocol
--------
* A new key enters the **small** FIFO (~10% of capacity) with ``freq = 0``.
* A hit only bumps ``freq`` (capped at 3). Nothing moves on a hit, so the read path is a dict
  lookup plus an integer store: no linked list to splice, no lock needed under the GIL.
* When space is needed and the main FIFO is within its share, the head of the small FIFO is
  examined: ``freq >= MOVE_THRESHOLD`` promotes it to the **main** FIFO (``freq`` reset to 0),
  otherwise it is evicted and its key remembered in the **ghost** FIFO (keys only, bounded to
  the main FIFO's item capacity).
* A miss whose key is in the ghost was evicted too early: it is inserted straight into main.
* When main is over its share, its head with ``freq > 0`` is reinserted at the tail with
  ``freq - 1`` (a 2-bit CLOCK); the first head with ``freq == 0`` is evicted.

Why: most keys in agent and web traces are one-hit wonders. The small FIFO filters them out
quickly (a scan of new keys churns only the small queue), while anything read twice earns a
place in main, where frequency, not recency, decides. This matches libCacheSim's ``S3FIFO``
defaults (small 10%, ghost 90% of the cache, move-to-main threshold 2, items admitted to main
while the small queue is full before the first eviction) so its figures can be reproduced.

Deletion is lazy: ``pop`` and a growing replace leave a stale reference in a deque, which
eviction skips (an entry is live iff the table maps its key to that very object). Deques are
compacted once stale references exceed the live entries (plus a small slack).

Threading: ``get``/``get_entry``/``peek_entry``/``__contains__``/``__len__`` may run
concurrently with one mutator under the GIL (they touch only the dict and one int); callers
serialise ``set``/``pop``/``clear`` themselves. A lost ``freq`` bump under a race is harmless.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["ENTRY_OVERHEAD", "S3FIFO", "Entry"]

MAX_FREQ = 3
ENTRY_OVERHEAD = 176
"""Bytes one entry costs besides its value and its key's characters: the :class:`Entry`, its share of
the table and of a deque, and the key's ``str`` header (tracemalloc, CPython 3.11, 64-bit). Byte-bounded
tiers charge it so that many small entries cannot hide behind a small total ``size``."""
_ABSENT = object()


class Entry:
    """One cached value. ``expire_at`` is opaque to the policy: callers check it."""

    __slots__ = ("expire_at", "freq", "in_main", "key", "size", "value")

    def __init__(self, key: Any, value: object, expire_at: float | None, size: int) -> None:
        self.key = key
        self.value = value
        self.expire_at = expire_at
        self.size = size
        self.freq = 0
        self.in_main = False

    def __repr__(self) -> str:
        where = "main" if self.in_main else "small"
        return f"Entry({self.key!r}, size={self.size}, freq={self.freq}, {where})"


class S3FIFO:
    """A bounded key->value map evicted by S3-FIFO (see the module docstring).

    Bounds: at most ``max_items`` entries and, if ``max_bytes`` is set, a total ``size`` of at
    most ``max_bytes``. An entry whose ``size`` exceeds ``max_bytes`` is never admitted: storing
    it would evict everything and still not fit, so ``set`` drops it and also removes any older
    value under that key (a stale value must not outlive a newer write). That removal, like
    ``pop`` and ``clear``, is not an eviction: ``on_evict`` is called only for capacity
    evictions, after ``set`` has finished updating the structure.

    ``get`` ignores ``expire_at``; TTL-aware callers use ``get_entry`` and check it themselves.
    """

    MOVE_THRESHOLD = 2
    """Hits while in the small queue needed to be promoted to main (libCacheSim default)."""

    def __init__(
        self,
        max_items: int,
        max_bytes: int | None = None,
        small_ratio: float = 0.1,
        on_evict: Callable[[Entry], None] | None = None,
    ) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be an int >= 1, got {max_items!r}")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ValueError(f"max_bytes must be None or an int >= 1, got {max_bytes!r}")
        if not 0.0 < small_ratio < 1.0:
            raise ValueError(f"small_ratio must be in (0, 1), got {small_ratio!r}")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.small_ratio = small_ratio
        self.on_evict = on_evict
        self._small_max_items = max(1, int(max_items * small_ratio))
        self._main_max_items = max_items - self._small_max_items
        self._ghost_max = max(1, self._main_max_items)
        inf = float("inf")
        self._small_max_bytes = inf if max_bytes is None else max_bytes * small_ratio
        self._main_max_bytes = inf if max_bytes is None else max_bytes - self._small_max_bytes
        self._table: dict[Any, Entry] = {}
        self._lookup = self._table.get
        self._small: deque[Entry] = deque()
        self._main: deque[Entry] = deque()
        self._ghost: OrderedDict[Any, None] = OrderedDict()
        self._reset_counters()
        self.evictions = 0

    def _reset_counters(self) -> None:
        self.nbytes = 0
        self._small_n = 0
        self._small_bytes = 0
        self._main_n = 0
        self._main_bytes = 0
        self._stale = 0
        self._has_evicted = False

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value (an access: bumps freq) or ``default``. Expiry is not checked."""
        e = self._lookup(key)
        if e is None:
            return default
        if e.freq < MAX_FREQ:
            e.freq += 1
        return e.value

    def get_entry(self, key: Hashable) -> Entry | None:
        """Like ``get`` but return the entry, so the caller can check ``expire_at``."""
        e = self._lookup(key)
        if e is not None and e.freq < MAX_FREQ:
            e.freq += 1
        return e

    def peek_entry(self, key: Hashable) -> Entry | None:
        """Return the entry without counting an access."""
        return self._lookup(key)

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def __len__(self) -> int:
        return len(self._table)

    def keys(self) -> list[Any]:
        return list(self._table)

    def __repr__(self) -> str:
        return (
            f"S3FIFO(len={len(self._table)}/{self.max_items}, nbytes={self.nbytes}/{self.max_bytes}, "
            f"small={self._small_n}, main={self._main_n}, ghost={len(self._ghost)})"
        )

    def set(self, key: Hashable, value: object, expire_at: float | None = None, size: int = 1) -> bool:
        """Insert or replace, evicting while over ``max_items``/``max_bytes``; return whether it was stored.

        Replacing keeps the entry resident with its queue and freq (an update is not a new
        admission); if the new size needs room, other entries are evicted, never this one. ``False``
        means the entry is bigger than ``max_bytes``: the key is now absent, so a caller that tracks
        residency elsewhere (L0's holder index) can forget it.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size!r}")
        old = self._lookup(key)
        if self.max_bytes is not None and size > self.max_bytes:
            if old is not None:
                self._unlink(old)
            return False
        if old is not None:
            delta = size - old.size
            if self.max_bytes is None or self.nbytes + delta <= self.max_bytes:
                old.expire_at = expire_at
                old.value = value
                old.size = size
                self._add_bytes(old, delta)
                return True
            self._unlink(old)
            evicted = self._make_room(size)
            e = Entry(key, value, expire_at, size)
            e.freq = old.freq
            self._link(e, old.in_main)
        else:
            hit_ghost = self._ghost.pop(key, _ABSENT) is not _ABSENT
            evicted = self._make_room(size)
            e = Entry(key, value, expire_at, size)
            to_main = hit_ghost or (
                not self._has_evicted
                and (self._small_n >= self._small_max_items or self._small_bytes >= self._small_max_bytes)
            )
            self._link(e, to_main)
        if evicted and self.on_evict is not None:
            for victim in evicted:
                self.on_evict(victim)
        return True

    def pop(self, key: Hashable) -> Entry | None:
        """Remove and return the entry (not an eviction), or None."""
        e = self._lookup(key)
        if e is not None:
            self._unlink(e)
        return e

    def clear(self) -> int:
        """Drop every entry and the ghost history; return how many entries were dropped."""
        n = len(self._table)
        self._table.clear()
        self._small.clear()
        self._main.clear()
        self._ghost.clear()
        self._reset_counters()
        return n

    def _add_bytes(self, e: Entry, delta: int) -> None:
        self.nbytes += delta
        if e.in_main:
            self._main_bytes += delta
        else:
            self._small_bytes += delta

    def _link(self, e: Entry, to_main: bool) -> None:
        e.in_main = to_main
        if to_main:
            self._main.append(e)
            self._main_n += 1
            self._main_bytes += e.size
        else:
            self._small.append(e)
            self._small_n += 1
            self._small_bytes += e.size
        self.nbytes += e.size
        self._table[e.key] = e

    def _unlink(self, e: Entry) -> None:
        """Remove a live entry, leaving a stale deque reference for eviction to skip."""
        del self._table[e.key]
        self.nbytes -= e.size
        if e.in_main:
            self._main_n -= 1
            self._main_bytes -= e.size
        else:
            self._small_n -= 1
            self._small_bytes -= e.size
        self._stale += 1
        if self._stale > len(self._table) + 64:
            self._compact()

    def _compact(self) -> None:
        table = self._table
        self._small = deque(e for e in self._small if table.get(e.key) is e)
        self._main = deque(e for e in self._main if table.get(e.key) is e)
        self._stale = 0

    def _make_room(self, size: int) -> list[Entry]:
        """Evict until one more entry of ``size`` fits; return the victims."""
        evicted: list[Entry] = []
        max_bytes = float("inf") if self.max_bytes is None else self.max_bytes
        table = self._table
        while table and (len(table) >= self.max_items or self.nbytes + size > max_bytes):
            self._has_evicted = True
            if self._small_n == 0 or self._main_n > self._main_max_items or self._main_bytes > self._main_max_bytes:
                victim = self._evict_main()
            else:
                victim = self._evict_small()
            if victim is not None:
                evicted.append(victim)
        self.evictions += len(evicted)
        return evicted

    def _evict_small(self) -> Entry | None:
        """Promote re-read heads to main until one head is evicted (to the ghost) or none left."""
        table, small = self._table, self._small
        while small:
            e = small.popleft()
            if table.get(e.key) is not e:
                self._stale -= 1
                continue
            self._small_n -= 1
            self._small_bytes -= e.size
            if e.freq >= self.MOVE_THRESHOLD:
                e.freq = 0
                e.in_main = True
                self._main.append(e)
                self._main_n += 1
                self._main_bytes += e.size
                continue
            del table[e.key]
            self.nbytes -= e.size
            ghost = self._ghost
            ghost[e.key] = None
            if len(ghost) > self._ghost_max:
                ghost.popitem(last=False)
            return e
        return None

    def _evict_main(self) -> Entry | None:
        """CLOCK over main: reinsert heads with freq > 0 (decremented), evict the first at 0."""
        table, main = self._table, self._main
        while main:
            e = main.popleft()
            if table.get(e.key) is not e:
                self._stale -= 1
                continue
            if e.freq > 0:
                e.freq -= 1
                main.append(e)
                continue
            del table[e.key]
            self._main_n -= 1
            self._main_bytes -= e.size
            self.nbytes -= e.size
            return e
        return None
