"""Counters and hot items, per manager and summed per process, shaped for agents' heartbeats.

Counters are plain attributes on a ``__slots__`` object: they sit on the L0 hit path, where a lock or a
dict lookup per increment would cost more than the hit itself. Under the GIL an increment from two
threads can very rarely be lost; telemetry tolerates that, correctness never depends on it.
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any, Protocol

from mw.clock import system_clock
from mw.config import TASK_STATUSES, MwConfig
from mw.keys import display_name, global_typed_prefix, is_internal
from mw.tasks import MIN_TASK_TTL_S

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
    "coalesced",
    "repeated_loads",
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


_count = itemgetter(1)

_RESCALE_AT = 512.0
"""Half-lives after which forward-decay weights move to a new landmark (2 ** 512 stays far inside a float)."""


class _Add(Protocol):
    def __call__(self, key: str, n: int = 1) -> None: ...


class HeavyHitters:
    """Bounded top-k counting: Space-Saving with batched pruning behind a doorkeeper, optionally forgetting.

    Counts live in a dict of at most ``2 * capacity`` keys. When it fills, the ``capacity`` largest
    survive and the largest pruned count becomes the floor a new key starts from, as in Space-Saving:
    a tracked key's count is never under its true count, and over it by at most that floor.

    A key seen for the first time only enters the doorkeeper, a bounded set that is emptied when full
    (TinyLFU's trick): one-off keys, most of a long tail, never reach the counts, so they cost a set
    insert instead of a pruning sort. A key seen again is counted from then on, its first sighting
    included. Internal keys (``mw:``) are never counted.

    With ``half_life_s`` > 0 a read counts half as much ``half_life_s`` seconds later, so the ranking is
    of what is hot now (prewarming must not keep refreshing what was hot an hour ago). This is forward
    decay (Cormode et al., 2009): a read at ``t`` adds ``2 ** ((t - landmark) / half_life_s)``, so an
    add stays one clock read and one addition and the ranking never needs rescanning; :meth:`top`
    divides by the weight of now and drops keys whose count has decayed below one read. Counts are
    rescaled to a new landmark before the weights could overflow. The landmark, the floor and the dict
    they scale are swapped as one tuple, so a racing add never mixes two scales.
    """

    __slots__ = (
        "_clock",
        "_counts",
        "_door",
        "_door_max",
        "_epoch",
        "_floor",
        "_inv_half_life",
        "_lock",
        "add",
        "capacity",
    )

    add: _Add
    """``add(key, n=1)``: count ``n`` reads of ``key`` (one of two methods, chosen once: decaying or not)."""

    def __init__(
        self,
        capacity: int = 64,
        doorkeeper: int = 4096,
        half_life_s: float = 0.0,
        clock: Callable[[], float] = system_clock,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"HeavyHitters capacity must be >= 1, got {capacity!r}")
        if not (math.isfinite(half_life_s) and half_life_s >= 0):
            raise ValueError(f"HeavyHitters half_life_s must be a finite number >= 0, got {half_life_s!r}")
        self.capacity = capacity
        self._door: set[str] = set()
        self._door_max = doorkeeper
        self._lock = threading.Lock()
        self._clock = clock
        self._inv_half_life = 1.0 / half_life_s if half_life_s else 0.0
        self.add = self._add_decayed if half_life_s else self._add_counted
        self._swap(clock() if half_life_s else 0.0, 0, {})

    def _swap(self, landmark: float, floor: float, counts: dict[str, float]) -> None:
        """Install a new table: as one tuple for decayed adds (a racing add never mixes two scales), and as
        plain attributes for counted ones, which have one scale and read one attribute on the hot path. The
        floor goes first: an add that already sees the new counts never starts a key from the old floor."""
        self._floor = floor
        self._epoch = (landmark, floor, counts)
        self._counts = counts

    def _add_counted(self, key: str, n: int = 1) -> None:
        counts = self._counts
        c = counts.get(key)
        if c is not None:
            counts[key] = c + n
            return
        if self._admitted(key):
            counts[key] = self._floor + n + 1
            if len(counts) > 2 * self.capacity:
                self._prune()

    def _add_decayed(self, key: str, n: int = 1) -> None:
        floor, counts, unit = self._now()
        c = counts.get(key)
        if c is not None:
            counts[key] = c + n * unit
            return
        if self._admitted(key):
            counts[key] = floor + (n + 1) * unit
            if len(counts) > 2 * self.capacity:
                self._prune()

    def _admitted(self, key: str) -> bool:
        """A key not yet counted: true on its second sighting; the first one only enters the doorkeeper."""
        door = self._door
        if key not in door:
            if not is_internal(key):
                if len(door) >= self._door_max:
                    door.clear()
                door.add(key)
            return False
        door.discard(key)
        return True

    def _now(self) -> tuple[float, dict[str, float], float]:
        """The floor and counts to use, and what one read counts now in their scale (rescaled first if it ran out)."""
        landmark, floor, counts = self._epoch
        if not self._inv_half_life:
            return floor, counts, 1.0
        exponent = (self._clock() - landmark) * self._inv_half_life
        if exponent > _RESCALE_AT:
            self._rescale()
            landmark, floor, counts = self._epoch
            exponent = (self._clock() - landmark) * self._inv_half_life
        return floor, counts, 2.0**exponent

    def _prune(self) -> None:
        with self._lock:
            landmark, _floor, counts = self._epoch
            if len(counts) <= 2 * self.capacity:
                return
            ranked = sorted(counts.items(), key=_count, reverse=True)
            self._swap(landmark, ranked[self.capacity][1], dict(ranked[: self.capacity]))

    def _rescale(self) -> None:
        with self._lock:
            landmark, floor, counts = self._epoch
            now = self._clock()
            exponent = (now - landmark) * self._inv_half_life
            if exponent <= _RESCALE_AT:
                return  # another thread rescaled first
            scale = 2.0**-exponent  # after a long idle spell this underflows to 0.0 (all forgotten), never overflows
            items = list(counts.items())  # one step under the GIL: a racing add cannot resize it meanwhile
            self._swap(now, floor * scale, {key: c * scale for key, c in items})

    def top(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` most read keys and their counts; with a half-life decayed and rounded, and only keys whose
        decayed count is at least one read."""
        _floor, counts, unit = self._now()
        items = list(counts.items())
        items.sort(key=_count, reverse=True)
        if not self._inv_half_life:
            return [(key, int(c)) for key, c in items[:n]]
        scale = 1.0 / unit
        ranked = []
        for key, c in items:
            decayed = c * scale
            if decayed < 1:
                break
            ranked.append((key, int(decayed + 0.5)))
        return ranked[:n]

    def discard(self, key: str) -> None:
        self._counts.pop(key, None)
        self._door.discard(key)

    def clear(self) -> None:
        self._swap(self._clock() if self._inv_half_life else 0.0, 0.0, {})
        self._door = set()


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
    coalesced: int
    """Reads served by another caller's load in this process (single-flight followers), no load of their own."""
    repeated_loads: int
    """Loads of a key whose previous load's value was still within its TTL (see :class:`RecentLoads`)."""

    def __init__(
        self, hot_capacity: int = 64, hot_half_life_s: float = 0.0, clock: Callable[[], float] = system_clock
    ) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.hot = HeavyHitters(hot_capacity, half_life_s=hot_half_life_s, clock=clock)

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
    """``[[name, count], ...]`` for real items only, named as the checklist shows them (the first ``top_n``)."""
    if top_n < 0:  # a slice's meaning: all but the last -top_n
        return [[display_name(k), c] for k, c in pairs if not is_internal(k)][:top_n]
    out: list[list[Any]] = []
    if top_n == 0:
        return out
    for k, c in pairs:
        if not is_internal(k):
            out.append([display_name(k), c])
            if len(out) == top_n:
                break
    return out


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

    def live_count(self) -> int:
        """Managers alive in this process."""
        with self._lock:
            return len(self._live)

    def hot(self, top_n: int) -> list[tuple[str, int]]:
        merged: dict[str, int] = {}
        with self._lock:
            for t in list(self._live):
                for k, c in t.hot.top(top_n * 4):
                    merged[k] = merged.get(k, 0) + c
        return sorted(merged.items(), key=lambda kv: kv[1], reverse=True)[:top_n]


process_telemetry = ProcessTelemetry()


class RecentLoads:
    """Per cluster: until when each recently loaded key's value lives, to count repeated loads.

    A load of a key whose last load (in this cluster) filled a value that has not expired yet, and that no
    write, delete or invalidation dropped since, is a *repeated load*: the per-process view of the
    invariant "at most one load per key per expiry" (an L2 eviction, a lost lease, a cache switched off in
    one tier show up here). Early refreshes and prewarming reload on purpose and are not checked.

    Bounded: at most ``capacity`` keys; when full, the expired ones go, and if that is not enough all of
    them (a repeated load may then go uncounted, a first load is never counted as one).
    """

    __slots__ = ("_until", "capacity")

    def __init__(self, capacity: int = 16384) -> None:
        self.capacity = capacity
        self._until: dict[str, float] = {}

    def loaded(self, key: str, expire_at: float, now: float) -> None:
        until = self._until
        if len(until) >= self.capacity and key not in until:
            kept = {k: t for k, t in list(until.items()) if t > now}
            self._until = kept if len(kept) < self.capacity else {}
        self._until[key] = expire_at

    def repeated(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        return until is not None and now < until

    def forget(self, keys: Iterable[str]) -> None:
        until = self._until
        for key in keys:
            until.pop(key, None)

    def clear(self) -> None:
        self._until = {}

    def __len__(self) -> int:
        return len(self._until)


class Histogram:
    """A cumulative histogram with fixed bounds (seconds), for the Prometheus and OpenTelemetry exports.

    ``listeners`` are called with each observed value (the OpenTelemetry bridge records them; Prometheus
    reads :meth:`snapshot` at scrape time).
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(bounds) or not bounds:
            raise ValueError(f"histogram bounds must be sorted and not empty, got {bounds!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()
        self.listeners: list[Callable[[float], None]] = []

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)  # the first bucket whose bound is >= value; len(bounds): +Inf
        with self._lock:
            self._counts[i] += 1
            self._sum += value
        for listener in list(self.listeners):
            listener(value)

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        """``([(upper bound, cumulative count), ..., (inf, count)], sum, count)``."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return cumulative, total, running


LAG_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TTL_BUCKETS_S = (1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 86400.0)

invalidation_lag = Histogram(LAG_BUCKETS_S)
"""Send-to-apply lag of invalidations received from other processes (the bus observes it), process-wide."""

OTHER_STATUS = "other"
"""The label of task statuses the configuration does not name (row data: never a label value of its own)."""

_TASK_PREFIX = global_typed_prefix("task", "by_id")


class TaskTTLs:
    """The TTLs this process caches task rows with, per status, and how many exceeded their status's TTL.

    The checklist's "verify running tasks have short TTLs": ``cache_task_row`` and ``get_task`` never exceed
    ``MW_TASK_TTL_{STATUS}_S`` (jitter is downward); a row written through a generic write
    (``set_global_item_typed("task", "by_id", ...)`` with a long TTL, the origin system's way) can.
    """

    def __init__(self, statuses: tuple[str, ...]) -> None:
        self.statuses = (*statuses, OTHER_STATUS)
        self.ttls = {s: Histogram(TTL_BUCKETS_S) for s in self.statuses}
        self.exceeded = dict.fromkeys(self.statuses, 0)

    def label(self, status: object) -> str:
        low = status.lower() if isinstance(status, str) else ""
        return low if low in self.ttls else OTHER_STATUS

    def observe(self, key: str, value: Any, ttl_s: float, config: MwConfig) -> None:
        """Note a fill or write of ``key``; only task rows (a mapping under a task key) are counted."""
        if not key.startswith(_TASK_PREFIX) or not isinstance(value, Mapping):
            return
        status = value.get("status")
        label = self.label(status)
        self.ttls[label].observe(ttl_s)
        limit = config.task_ttl_s(status if isinstance(status, str) else None)
        if ttl_s > (max(limit, MIN_TASK_TTL_S) if limit > 0 else 0.0):
            self.exceeded[label] += 1


task_ttls = TaskTTLs(TASK_STATUSES)
"""Process-wide task-row TTLs (see :class:`TaskTTLs`)."""
