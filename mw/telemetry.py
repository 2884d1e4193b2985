"""Counters and hot items, per manager and summed per process, shaped for agents' heartbeats.

Counters are plain attributes on a ``__slots__`` object: they sit on the L0 hit path, where a lock or a
dict lookup per increment would cost more than the hit itself. Under the GIL an increment from two
threads can very rarely be lost; telemetry tolerates that, correctness never depends on it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from mw.keys import display_name, is_internal

COUNTERS = (
    "misses",
    "l0_hits",
    "l1_hits",
    "l2_hits",
    "mlt_loads",
    "loader_calls",
    "task_cache_hits",
    "task_cache_misses",
    "task_evictions",
    "negative_cache_hits",
    "l0_evictions",
    "l2_errors",
    "l2_write_failures",
    "mlt_errors",
    "corrupt_entries",
    "prewarmed",
    "lease_waits",
    "lease_extensions",
    "early_refreshes",
    "stale_sets_prevented",
    "uncacheable",
    "lease_rechecks",
    "load_timeouts",
)

METRIC_FIELDS: dict[str, type] = {
    "mw_hit_ratio": float,
    "mw_l0_hits": int,
    "mw_l1_hits": int,
    "mw_l2_hits": int,
    "mw_task_cache_hits": int,
    "mw_task_cache_misses": int,
    "mw_task_evictions": int,
    "mw_negative_cache_hits": int,
    "mw_hot_items": list,
}
"""The checklist's heartbeat fields and their types; ``memory_metrics`` adds more, never fewer."""


class HeavyHitters:
    """Bounded top-k counting: Space-Saving with batched pruning behind a doorkeeper.

    Counts live in a dict of at most ``2 * capacity`` keys. When it fills, the ``capacity`` largest
    survive and the largest pruned count becomes the floor a new key starts from, as in Space-Saving:
    a tracked key's count is never under its true count, and over it by at most that floor.

    A key seen for the first time only enters the doorkeeper, a bounded set that is emptied when full
    (TinyLFU's trick): one-off keys, most of a long tail, never reach the counts, so they cost a set
    insert instead of a pruning sort. A key seen again is counted from then on, its first sighting
    included. Internal keys (``mw:``) are never counted.
    """

    __slots__ = ("_counts", "_door", "_door_max", "_floor", "_lock", "capacity")

    def __init__(self, capacity: int = 64, doorkeeper: int = 4096) -> None:
        if capacity < 1:
            raise ValueError(f"HeavyHitters capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self._counts: dict[str, int] = {}
        self._door: set[str] = set()
        self._door_max = doorkeeper
        self._floor = 0
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        counts = self._counts
        c = counts.get(key)
        if c is not None:
            counts[key] = c + n
            return
        door = self._door
        if key not in door:
            if key.startswith("mw:"):
                return
            if len(door) >= self._door_max:
                door.clear()
            door.add(key)
            return
        door.discard(key)
        counts[key] = self._floor + n + 1
        if len(counts) > 2 * self.capacity:
            self._prune()

    def _prune(self) -> None:
        with self._lock:
            counts = self._counts
            if len(counts) <= 2 * self.capacity:
                return
            ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
            self._floor = ranked[self.capacity][1]
            self._counts = dict(ranked[: self.capacity])

    def top(self, n: int) -> list[tuple[str, int]]:
        items = list(self._counts.items())
        items.sort(key=lambda kv: kv[1], reverse=True)
        return items[:n]

    def discard(self, key: str) -> None:
        self._counts.pop(key, None)
        self._door.discard(key)

    def clear(self) -> None:
        self._counts = {}
        self._door = set()
        self._floor = 0


class Telemetry:
    """One manager's counters and hot items."""

    __slots__ = (*COUNTERS, "__weakref__", "hot")
    misses: int
    l0_hits: int
    l1_hits: int
    l2_hits: int
    mlt_loads: int
    loader_calls: int
    task_cache_hits: int
    task_cache_misses: int
    task_evictions: int
    negative_cache_hits: int
    l0_evictions: int
    l2_errors: int
    l2_write_failures: int
    mlt_errors: int
    corrupt_entries: int
    prewarmed: int
    lease_waits: int
    lease_extensions: int
    early_refreshes: int
    stale_sets_prevented: int
    uncacheable: int
    lease_rechecks: int
    load_timeouts: int

    def __init__(self, hot_capacity: int = 64) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.hot = HeavyHitters(hot_capacity)

    def reset(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.hot.clear()

    def counters(self) -> dict[str, int]:
        return _with_hits({name: getattr(self, name) for name in COUNTERS})


def _with_hits(counters: dict[str, int]) -> dict[str, int]:
    """Hits are not counted separately (one increment less on the hit path): they are the tier hits."""
    counters["hits"] = counters["l0_hits"] + counters["l1_hits"] + counters["l2_hits"]
    return counters


def hit_ratio(hits: int, misses: int) -> float:
    total = hits + misses
    return hits / total if total else 0.0


def hot_list(pairs: Iterable[tuple[str, int]], top_n: int) -> list[list[Any]]:
    """``[[name, count], ...]`` for real items only, named as the checklist shows them."""
    return [[display_name(k), c] for k, c in pairs if not is_internal(k)][:top_n]


def memory_metrics(
    counters: dict[str, int],
    hot: list[tuple[str, int]],
    *,
    enabled: bool,
    l0_items: int,
    l0_bytes: int,
    l0_max_items: int,
    l0_max_bytes: int,
    l1_items: int | None = None,
    l1_bytes: int | None = None,
    top_n: int = 10,
) -> dict[str, Any]:
    """The heartbeat dict: every ``mw_*`` field of the checklist, then the extra ones we keep.

    ``mw_l1_items``/``mw_l1_bytes`` appear when the caller knows the node tiers (the process does; a
    manager's node tier may be shared or remote, so it passes none).
    """
    out = {
        "mw_hit_ratio": round(hit_ratio(counters["hits"], counters["misses"]), 6),
        "mw_l0_hits": counters["l0_hits"],
        "mw_l1_hits": counters["l1_hits"],
        "mw_l2_hits": counters["l2_hits"],
        "mw_task_cache_hits": counters["task_cache_hits"],
        "mw_task_cache_misses": counters["task_cache_misses"],
        "mw_task_evictions": counters["task_evictions"],
        "mw_negative_cache_hits": counters["negative_cache_hits"],
        "mw_hot_items": hot_list(hot, top_n),
        "mw_enabled": enabled,
        "mw_hits": counters["hits"],
        "mw_misses": counters["misses"],
        "mw_mlt_loads": counters["mlt_loads"],
        "mw_l0_items": l0_items,
        "mw_l0_bytes": l0_bytes,
        "mw_l0_max_items": l0_max_items,
        "mw_l0_max_bytes": l0_max_bytes,
        "mw_l0_evictions": counters["l0_evictions"],
        "mw_tier_errors": counters["l2_errors"] + counters["mlt_errors"],
        "mw_l2_write_failures": counters["l2_write_failures"],
        "mw_corrupt_entries": counters["corrupt_entries"],
        "mw_prewarmed": counters["prewarmed"],
    }
    if l1_items is not None:
        out["mw_l1_items"] = l1_items
    if l1_bytes is not None:
        out["mw_l1_bytes"] = l1_bytes
    return out


class ProcessTelemetry:
    """Sums the telemetry of every manager in the process, including closed ones."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self._retired = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()

    def register(self, telemetry: Telemetry) -> None:
        with self._lock:
            self._live.add(telemetry)

    def retire(self, telemetry: Telemetry) -> None:
        """Keep a closed manager's counts in the process totals."""
        with self._lock:
            if telemetry in self._live:
                self._live.discard(telemetry)
                for name in COUNTERS:
                    self._retired[name] += getattr(telemetry, name)

    def reset(self) -> None:
        with self._lock:
            self._retired = dict.fromkeys(COUNTERS, 0)
            for t in list(self._live):
                t.reset()

    def counters(self) -> dict[str, int]:
        with self._lock:
            total = dict(self._retired)
            for t in list(self._live):
                for name in COUNTERS:
                    total[name] += getattr(t, name)
            return _with_hits(total)

    def hot(self, top_n: int) -> list[tuple[str, int]]:
        merged: dict[str, int] = {}
        with self._lock:
            for t in list(self._live):
                for k, c in t.hot.top(top_n * 4):
                    merged[k] = merged.get(k, 0) + c
        return sorted(merged.items(), key=lambda kv: kv[1], reverse=True)[:top_n]


process_telemetry = ProcessTelemetry()
