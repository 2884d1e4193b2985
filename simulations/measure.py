"""What a run measures: request outcomes, loads per key per expiry, stale reads, task TTLs, L0 size, heartbeats.

Everything here is keyed on simulated time and filled by the model as events happen, so the same seed yields the same
numbers. The collectors are plain objects with counters: they sit on the request path of every agent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mw.keys import global_typed_key

OUTCOMES = ("l0", "l1", "l2", "negative", "coalesced", "load")
"""How a read ended: answered by a tier, by the negative cache, by another agent's load (waited), or by its own load."""

MAX_EXAMPLES = 10


class Outcomes:
    """Request counters; the hit-path increments are attribute adds on a slotted object."""

    __slots__ = (*OUTCOMES, "batch_missed", "herd_reads", "item_reads", "task_reads", "writes")

    def __init__(self) -> None:
        self.l0 = self.l1 = self.l2 = self.negative = self.coalesced = self.load = 0
        self.item_reads = self.task_reads = self.herd_reads = self.writes = 0
        self.batch_missed = 0
        """Keys of a ``get_many_typed`` no tier held: the runtime's misses, each then read by key on its own."""

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @property
    def requests(self) -> int:
        return self.l0 + self.l1 + self.l2 + self.negative + self.coalesced + self.load

    @property
    def cache_answered(self) -> int:
        return self.l0 + self.l1 + self.l2 + self.negative


class Seen:
    """How one agent's reads ended, as the simulator saw them: its own count, kept beside the runtime's.

    The tier that answered a hit is the one that held the key when the read began (``l0``/``l1``/``l2``);
    ``missed`` counts, when they begin, the reads no tier answered (the runtime's misses), which end as
    ``coalesced`` (another caller's value) or ``load`` (their own).
    """

    __slots__ = (
        "coalesced",
        "l0",
        "l1",
        "l2",
        "load",
        "missed",
        "negative",
        "refreshes",
        "task_evictions",
        "task_hits",
        "task_misses",
    )

    def __init__(self) -> None:
        self.l0 = self.l1 = self.l2 = self.negative = self.coalesced = self.load = self.missed = 0
        self.task_hits = self.task_misses = self.task_evictions = 0
        self.refreshes = 0
        """L0 hits that ``begin_get_or_load`` handed back to be refreshed early (XFetch): the agent loads them."""

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def observed_hit_ratio(counts: dict[str, int]) -> float:
    """Tier answers over tier answers and misses: the checklist's hit ratio, from what the simulator saw.

    A negative-cache answer is neither (as the runtime counts it: its hit ratio is about values).
    """
    hits = counts["l0"] + counts["l1"] + counts["l2"]
    total = hits + counts["coalesced"] + counts["load"] + counts.get("batch_missed", 0)
    return hits / total if total else 0.0


def request_hit_ratio(counts: dict[str, int]) -> float:
    total = sum(counts[o] for o in OUTCOMES)
    answered = counts["l0"] + counts["l1"] + counts["l2"] + counts["negative"]
    return answered / total if total else 0.0


OPERATIONS = (
    "get_item_typed",
    "get_many_typed",
    "get_or_load",
    "set_global_item_typed",
    "del_global_item_typed",
    "del_global_key",
    "get_task",
    "cache_task_row",
    "invalidate_task",
    "update_task_status",
    "herd_read",
    "prewarm",
    "memory_metrics",
)
"""The runtime calls a run makes, as ``result.json`` counts them (``operations``): item reads by key
(``begin_load``), batches, reads with a caller TTL, writes, deletes, task reads, task caching at creation, task
status changes (the simulator's ``put_task`` then ``invalidate_task``, or ``update_task_status``), herd reads
(``begin_load`` with the herd's TTL), prewarming and heartbeats."""


class Operations:
    """How many of each runtime operation ran, and what the oracle found per operation (``[mix]`` is honoured)."""

    __slots__ = ("batch_followups", "batch_keys", "batch_values", "counts", "stale_beyond")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self.batch_keys = 0
        """Ids asked for by every ``get_many_typed``."""
        self.batch_values = 0
        """Ids a batch answered (a tier held them)."""
        self.batch_followups = 0
        """Ids a batch left out, then read by key."""
        self.stale_beyond: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        """Answers judged stale beyond the bounds, by the operation that returned them."""

    @classmethod
    def merged(cls, parts: Sequence[Operations]) -> Operations:
        """The sum of several runs' counts (the Ray engine's shards)."""
        out = cls()
        for part in parts:
            for name, n in part.counts.items():
                out.counts[name] = out.counts.get(name, 0) + n
            for name, n in part.stale_beyond.items():
                out.stale_beyond[name] = out.stale_beyond.get(name, 0) + n
            out.batch_keys += part.batch_keys
            out.batch_values += part.batch_values
            out.batch_followups += part.batch_followups
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "batch": {"keys": self.batch_keys, "values": self.batch_values, "followups": self.batch_followups},
            "stale_beyond_bounds": {k: v for k, v in self.stale_beyond.items() if v},
        }


class LoadTracker:
    """Loads from Mlt per key per expiry (the stampede check).

    A *generation* of a key starts with a load and lasts while that load is in flight and then until the value (or the
    negative marker) it filled expires or is invalidated. Every further load inside a generation is a stampede load:
    with the lease, waiters read the holder's value instead; with the negative cache, an absent key is asked once per
    negative TTL.
    """

    def __init__(self, outages: Sequence[tuple[float, float]] = ()) -> None:
        self.outages = list(outages)
        """``(start, end)`` of the windows L2 is down: no cluster-wide copy or lease exists then, so a node reloads
        a key its L1 lost (one load per key per expiry *of that node's copy*), and what it loads never reaches L2:
        inside a window only a load while another one of the key is in flight counts, and its fill opens no
        generation for the readers after."""
        self.in_flight: dict[str, int] = {}
        self.node_in_flight: Counter[tuple[str, str | None]] = Counter()
        """Loads in flight by key and node: inside an outage a node (one process, its own single flight) loads a key
        once, whatever the other nodes do; only a second load on the same node is a stampede load."""
        self.leaseless: Counter[str] = Counter()
        """Loads in flight that began inside an outage (no lease): after it, another node's load with the lease is
        not a stampede load for them."""
        self.valid_until: dict[str, float] = {}
        self.gen_loads: dict[str, int] = {}
        self.gen_absent: dict[str, bool] = {}
        self.histogram: Counter[int] = Counter()
        self.loads = 0
        self.failed_loads = 0
        self.lost_loads = 0
        self.stampede_loads = 0
        self.max_present = 0
        self.max_absent = 0
        self.examples: list[dict[str, Any]] = []
        self.series: list[tuple[float, int]] = []
        """(time, loads of that generation) for every generation that needed more than one load."""
        self.per_key: Counter[str] | None = None
        """Loads by key from ``per_key_from`` on, when asked (:meth:`count_per_key`): the prewarm comparison's."""
        self.per_key_from = 0.0

    def in_outage(self, now: float) -> bool:
        return any(start <= now < end for start, end in self.outages)

    def count_per_key(self, since: float) -> None:
        """Count loads by key from simulated ``since`` on (off by default: a catalog of 200,000 keys costs a dict)."""
        self.per_key = Counter()
        self.per_key_from = since

    def started(self, key: str, now: float, node: str | None = None) -> bool:
        """A load began on ``node``; returns whether it is a stampede load."""
        self.loads += 1
        if self.per_key is not None and now >= self.per_key_from:
            self.per_key[key] += 1
        outage = bool(self.outages) and self.in_outage(now)
        cached = now < self.valid_until.get(key, -math.inf) and not outage
        same_node = self.node_in_flight[(key, node)]
        with_lease = self.in_flight.get(key, 0) - self.leaseless[key]
        busy = (same_node if outage else with_lease) > 0
        if busy or cached:
            n = self.gen_loads.get(key, 0) + 1
            self.stampede_loads += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append({"key": key, "t": round(now, 3), "loads_in_generation": n})
        else:
            self._close(key)
            n = 1
            self.gen_absent[key] = False
        self.gen_loads[key] = n
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.node_in_flight[(key, node)] += 1
        if outage:
            self.leaseless[key] += 1
        return n > 1

    def _done(self, key: str, node: str | None, leaseless: bool = False) -> None:
        if leaseless:
            left = self.leaseless.get(key, 0) - 1
            if left > 0:
                self.leaseless[key] = left
            else:
                self.leaseless.pop(key, None)
        count = self.node_in_flight.get((key, node), 0)
        if count > 1:
            self.node_in_flight[(key, node)] = count - 1
        else:
            self.node_in_flight.pop((key, node), None)

    def failed(self, key: str, stampede: bool, node: str | None = None, leaseless: bool = False) -> None:
        """A load Mlt did not answer (``mlt_down``): nothing was filled, so the generation it opened is void."""
        self.failed_loads += 1
        self._done(key, node, leaseless)
        left = self.in_flight[key] = max(0, self.in_flight.get(key, 0) - 1)
        if not stampede and not left and self.gen_loads.get(key) == 1:
            del self.gen_loads[key]
            self.gen_absent.pop(key, None)

    def lost(self, key: str, node: str | None = None, leaseless: bool = False) -> None:
        """A crashed agent's load: it ends when its lease expires, and so does its generation (the load that
        takes it over then is the next generation's first; one before it is a stampede load)."""
        self.lost_loads += 1
        self._done(key, node, leaseless)
        self.in_flight[key] = max(0, self.in_flight.get(key, 0) - 1)
        if not self.in_flight[key]:
            self._close(key)

    def finished(
        self,
        key: str,
        now: float,
        absent: bool,
        valid_until: float | None,
        node: str | None = None,
        leaseless: bool = False,
    ) -> None:
        """A load completed; ``valid_until`` is when what it filled will expire (``None``: nothing was cached);
        ``leaseless``: it began inside an outage."""
        self.in_flight[key] = max(0, self.in_flight.get(key, 0) - 1)
        self._done(key, node, leaseless)
        if absent:
            self.gen_absent[key] = True
        if valid_until is not None and not (self.outages and self.in_outage(now)):
            self.valid_until[key] = max(valid_until, self.valid_until.get(key, -math.inf))

    def refreshing(self, key: str) -> None:
        """An early refresh (XFetch) of a cached value starts: one load before the copy expires, by design; it
        opens the key's next generation (a load of it already in flight still counts as a stampede load)."""
        self._close(key)
        self.valid_until.pop(key, None)

    def refreshed(self, key: str, valid_until: float) -> None:
        """A write-through replaced the cached value: the key is cached until ``valid_until``."""
        self.valid_until[key] = valid_until

    def invalidated(self, key: str) -> None:
        """The cached value was deleted on purpose: the next load starts a new generation."""
        self._close(key)
        self.valid_until.pop(key, None)
        if self.in_flight.pop(key, None):
            for gone in [k for k in self.node_in_flight if k[0] == key]:
                del self.node_in_flight[gone]
            self.leaseless.pop(key, None)

    def _close(self, key: str) -> None:
        n = self.gen_loads.pop(key, 0)
        if n:
            self.histogram[n] += 1
            if self.gen_absent.pop(key, False):
                self.max_absent = max(self.max_absent, n)
            else:
                self.max_present = max(self.max_present, n)

    def wiped(self) -> None:
        """L2 lost every key (a killed Redis started again, empty: ``l2_down`` ``mode = "kill"``): what it held has
        expired at once, so every generation not in flight ends and the next load of a key opens its next one."""
        for key in list(self.gen_loads):
            if not self.in_flight.get(key):
                self._close(key)
        self.valid_until.clear()

    def close_all(self) -> None:
        for key in list(self.gen_loads):
            self._close(key)

    def summary(self) -> dict[str, Any]:
        self.close_all()
        return {
            "loads": self.loads,
            "failed_loads": self.failed_loads,
            "lost_loads": self.lost_loads,
            "generations": sum(self.histogram.values()),
            "stampede_loads": self.stampede_loads,
            "max_loads_per_key_per_expiry": max(self.max_present, self.max_absent),
            "max_loads_present_keys": self.max_present,
            "max_loads_absent_keys": self.max_absent,
            "loads_per_expiry_histogram": {str(k): v for k, v in sorted(self.histogram.items())},
            "examples": self.examples,
        }


class CallerErrors:
    """Errors the runtime raised to its callers (reads, writes, prewarming), judged against the fault windows.

    An error is *inside* a window when the window was open at some moment of the call (its start to its error); an
    ``MltUnavailable`` also when it was open within ``mlt_timeout_s`` before the error (a read that joined a load
    gets that load's error: the load asked Mlt at most its deadline before).
    Allowed: only inside an ``mlt_down`` window, only ``MltUnavailable``, only for a call that had to ask Mlt (a
    read that missed every tier and loaded or joined a load, a write, a prewarm). Not allowed: any other, and any
    error of a lookup (``begin_load`` itself: a hit, or the decision to load, never fails).
    """

    def __init__(self, windows: Sequence[tuple[str, float, float]], mlt_timeout_s: float = 0.0) -> None:
        self.windows = list(windows)
        self.mlt_timeout_s = mlt_timeout_s
        self.by_window: list[dict[str, Any]] = [
            {"kind": k, "start_s": a, "end_s": b, "reads": 0, "writes": 0, "not_allowed": 0} for k, a, b in windows
        ]
        self.reads = self.writes = self.outside = self.not_allowed = self.hits = self.lookups = 0
        self.types: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def record(
        self, what: str, started: float, now: float, error: BaseException, *, lookup: bool = False, hit: bool = False
    ) -> bool:
        """One error; ``what`` is ``read``, ``write`` or ``prewarm``. Returns whether it was allowed."""
        if what == "read":
            self.reads += 1
        else:
            self.writes += 1
        self.types[type(error).__name__] += 1
        mlt_error = type(error).__name__ == "MltUnavailable"
        since = min(started, now - self.mlt_timeout_s) if mlt_error else started
        inside = [n for n, (_kind, start, end) in enumerate(self.windows) if since < end and now >= start]
        if not inside:
            self.outside += 1
        self.hits += hit
        self.lookups += lookup
        mlt_down = any(self.windows[n][0] == "mlt_down" for n in inside)
        allowed = mlt_down and not lookup and mlt_error
        for n in inside:
            row = self.by_window[n]
            row["reads" if what == "read" else "writes"] += 1
            row["not_allowed"] += not allowed
        if not allowed:
            self.not_allowed += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append(
                    {
                        "what": what,
                        "started": round(started, 3),
                        "t": round(now, 3),
                        "error": f"{type(error).__name__}: {error}",
                        "lookup": lookup,
                        "hit": hit,
                    }
                )
        return allowed

    def merge(self, other: CallerErrors) -> None:
        """Add another shard's counts (the Ray engine: one collector per shard, same windows)."""
        for name in ("reads", "writes", "outside", "not_allowed", "hits", "lookups"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.types.update(other.types)
        for mine, theirs in zip(self.by_window, other.by_window, strict=False):
            for name in ("reads", "writes", "not_allowed"):
                mine[name] += theirs[name]
        self.examples = (self.examples + other.examples)[:MAX_EXAMPLES]

    def summary(self) -> dict[str, Any]:
        return {
            "reads": self.reads,
            "writes": self.writes,
            "outside_windows": self.outside,
            "not_allowed": self.not_allowed,
            "lookups": self.lookups,
            "hits": self.hits,
            "types": dict(sorted(self.types.items())),
            "by_window": self.by_window,
            "examples": self.examples,
        }


@dataclass
class Waits:
    """How long readers waited for an answer (a value, or an error), and who was still waiting at the end."""

    bound_s: float
    """The runtime's promise: ``MW_LOAD_TIMEOUT_S``, plus one poll and its round trips (1 s)."""
    longest_s: float = 0.0
    longest_at: float = 0.0
    over_bound: int = 0
    still_waiting: int = 0
    """Reads of live agents unanswered at the end of the run that began more than ``bound_s`` before it."""

    def answered(self, started: float, now: float) -> None:
        waited = now - started
        if waited > self.longest_s:
            self.longest_s, self.longest_at = waited, started
        if waited > self.bound_s:
            self.over_bound += 1

    def merge(self, other: Waits) -> None:
        if other.longest_s > self.longest_s:
            self.longest_s, self.longest_at = other.longest_s, other.longest_at
        self.over_bound += other.over_bound
        self.still_waiting += other.still_waiting

    def summary(self) -> dict[str, Any]:
        return {
            "bound_s": self.bound_s,
            "longest_s": round(self.longest_s, 3),
            "longest_started_at": round(self.longest_at, 3),
            "over_bound": self.over_bound,
            "still_waiting": self.still_waiting,
        }


class KeyStats:
    """Per key, from simulated ``since`` on: reads and hits as the simulator saw them, and prewarming's Mlt loads.

    The reads are counted from each read's plan (:meth:`wrap` around ``Model.lookup``), not from the runtime's hot
    items: the hot keys are what the simulator observed. A hit is what the runtime counts as one (a tier's answer at
    once; another caller's value is a miss). Prewarming's Mlt loads are seen at the runtime's fault seam
    (:mod:`mw.faults`), installed for the length of each ``prewarm()`` call only; the read path's loads are the
    load tracker's (:meth:`LoadTracker.count_per_key`).
    """

    def __init__(self, now: Callable[[], float], since: float) -> None:
        self.now = now
        self.since = since
        self.reads: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self.prewarm_loads: Counter[str] = Counter()

    def wrap(self, lookup: Callable[..., Any]) -> Callable[..., Any]:
        """``lookup`` counting each read of a key and whether a tier answered it at once."""
        reads, hits, now, since = self.reads, self.hits, self.now, self.since

        def counted(agent: Any, kind: str, scope: str, item_id: str, key: str) -> Any:
            plan = lookup(agent, kind, scope, item_id, key)
            if now() >= since:
                reads[key] += 1
                if plan.state == "hit" and not plan.shared:
                    hits[key] += 1
            return plan

        return counted

    def __call__(self, point: str, key: str | None) -> None:
        """The fault seam's injector during a ``prewarm()`` call: counts its item loads from Mlt, never acts."""
        if point == "mlt.get_item" and key is not None and self.now() >= self.since:
            kind, scope, item_id = key.split(":", 2)
            self.prewarm_loads[global_typed_key(kind, scope, item_id)] += 1

    def hottest(self, n: int) -> list[str]:
        """The ``n`` most read keys (ties by key, so a seed gives one list)."""
        return [key for key, _ in sorted(self.reads.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def summary(self, keys: Sequence[str], read_loads: Counter[str] | None) -> dict[str, Any]:
        """What the run did for ``keys``: reads, hit ratio, Mlt loads on the read path and by prewarming."""
        reads = sum(self.reads[k] for k in keys)
        hits = sum(self.hits[k] for k in keys)
        on_reads = sum(read_loads[k] for k in keys) if read_loads is not None else 0
        by_prewarm = sum(self.prewarm_loads[k] for k in keys)
        return {
            "n": len(keys),
            "reads": reads,
            "hits": hits,
            "hit_ratio": round(hits / reads, 6) if reads else 0.0,
            "read_loads": on_reads,
            "prewarm_loads": by_prewarm,
            "mlt_loads": on_reads + by_prewarm,
        }


STALE_CLASSES = ("task", "item", "herd")
"""What the stale-read oracle judges: task rows, catalog items (present and absent ids), the herd's hot keys."""


def _per_class() -> dict[str, int]:
    return dict.fromkeys(STALE_CLASSES, 0)


@dataclass
class StaleLog:
    """Every task, item and herd read judged against :class:`simulations.truth.Truth`: values, ``None`` and
    negative-cache answers alike. An example's ``returned``/``current`` version 0 means absent."""

    checked: dict[str, int] = field(default_factory=_per_class)
    within_bounds: dict[str, int] = field(default_factory=_per_class)
    beyond_bounds: dict[str, int] = field(default_factory=_per_class)
    absent_answers: dict[str, int] = field(default_factory=_per_class)
    """Reads judged whose answer was ``None`` or the negative cache (included in ``checked``)."""
    tolerance_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STALE_CLASSES, 0.0))
    """The tolerance each class was judged with (:attr:`simulations.truth.Truth.lag_s`)."""
    tolerance_same_node_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STALE_CLASSES, 0.0))
    """The tolerance of a reader on the writer's node (:attr:`simulations.truth.Truth.local_lag_s`)."""
    examples: list[dict[str, Any]] = field(default_factory=list)

    def record(self, what: str, verdict: int, record: str, version: int, current: int, now: float) -> None:
        self.checked[what] += 1
        if version == 0:
            self.absent_answers[what] += 1
        if verdict:
            self.flag(what, verdict, record, version, current, now)

    def flag(self, what: str, verdict: int, record: str, version: int, current: int, now: float) -> None:
        """A stale answer (``verdict`` 1: within the bounds, 2: beyond them); the caller counted it as checked."""
        if verdict == 1:
            self.within_bounds[what] += 1
        elif verdict == 2:
            self.beyond_bounds[what] += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append(
                    {"what": what, "record": record, "returned": version, "current": current, "t": round(now, 3)}
                )

    @property
    def violations(self) -> int:
        return sum(self.beyond_bounds.values())

    def summary(self) -> dict[str, Any]:
        return {
            "checked": dict(self.checked),
            "absent_answers": dict(self.absent_answers),
            "tolerance_s": dict(self.tolerance_s),
            "tolerance_same_node_s": dict(self.tolerance_same_node_s),
            "stale_within_bounds": dict(self.within_bounds),
            "stale_beyond_bounds": dict(self.beyond_bounds),
            "violations": self.violations,
            "examples": self.examples,
        }


@dataclass
class TaskTTLs:
    """TTL compliance per task status: what each caching applied, and the remaining life of every copy served."""

    applied_max: dict[str, float] = field(default_factory=dict)
    applied_count: Counter[str] = field(default_factory=Counter)
    served_max_remaining: dict[str, float] = field(default_factory=dict)
    l2_life_max_s: dict[str, float] = field(default_factory=dict)
    l2_no_expiry: Counter[str] = field(default_factory=Counter)

    def cached(self, status: str, ttl_s: float) -> None:
        self.applied_count[status] += 1
        if ttl_s > self.applied_max.get(status, -1.0):
            self.applied_max[status] = ttl_s

    def served(self, status: str, remaining_s: float) -> None:
        if remaining_s > self.served_max_remaining.get(status, -1.0):
            self.served_max_remaining[status] = remaining_s

    def probed(self, status: str, pttl_ms: int, applied_s: float) -> None:
        """Redis's ``PTTL`` of a row just cached. Redis counts it down on its own (real) clock, a few ms
        below the applied TTL by the time it is read: a PTTL within the applied TTL confirms it (and keeps a
        seeded run's numbers free of real time); one beyond it is what Redis will really keep, and counts."""
        if pttl_ms == -1:
            self.l2_no_expiry[status] += 1
            return
        if pttl_ms < 0:  # not in L2 (its write failed): nothing to judge
            return
        life = applied_s if pttl_ms <= math.ceil(applied_s * 1000) else pttl_ms / 1000
        if life > self.l2_life_max_s.get(status, -1.0):
            self.l2_life_max_s[status] = life

    def worst(self, status: str) -> float:
        """The longest a cached row in ``status`` could still be served, over all three observations (s)."""
        return max(
            self.applied_max.get(status, 0.0),
            self.served_max_remaining.get(status, 0.0),
            math.inf if self.l2_no_expiry.get(status) else self.l2_life_max_s.get(status, 0.0),
        )

    def summary(self) -> dict[str, Any]:
        statuses = sorted(set(self.applied_max) | set(self.served_max_remaining) | set(self.l2_life_max_s))
        return {
            s: {
                "cached": self.applied_count.get(s, 0),
                "max_ttl_applied_s": round(self.applied_max.get(s, 0.0), 3),
                "max_remaining_when_served_s": round(self.served_max_remaining.get(s, 0.0), 3),
                "max_l2_life_s": round(self.l2_life_max_s.get(s, 0.0), 3),
                "l2_without_expiry": self.l2_no_expiry.get(s, 0),
            }
            for s in statuses
        }


HEARTBEAT_FIELDS: dict[str, type] = {
    "mw_hit_ratio": float,
    "mw_l0_hits": int,
    "mw_l1_hits": int,
    "mw_l2_hits": int,
    "mw_task_cache_hits": int,
    "mw_task_evictions": int,
    "mw_hot_items": list,
    "mw_misses": int,
    "mw_task_cache_misses": int,
    "mw_negative_cache_hits": int,
    "mw_l0_items": int,
}
"""The fields a heartbeat's ``memory_metrics`` must carry: the checklist's "Telemetry Verification" example (the
first seven), then the ones whose values are checked against the simulator's own counts. The simulator's copy, on
purpose: a field the runtime stops sending fails here even if the runtime's own list lost it too."""

RATIO_TOLERANCE = 0.01
"""How far a reported hit ratio may be from the observed one (the runtime rounds to 6 places)."""


def expected_heartbeat(seen: Seen, l0_items: int) -> dict[str, int]:
    """The counter values a heartbeat sent now must carry, from what the simulator saw of that agent."""
    return {
        "mw_l0_hits": seen.l0,
        "mw_l1_hits": seen.l1,
        "mw_l2_hits": seen.l2,
        "mw_misses": seen.missed,
        "mw_negative_cache_hits": seen.negative,
        "mw_task_cache_hits": seen.task_hits,
        "mw_task_cache_misses": seen.task_misses,
        "mw_task_evictions": seen.task_evictions,
        "mw_l0_items": l0_items,
    }


@dataclass
class Heartbeats:
    """Every agent's ``memory_metrics`` at its heartbeat interval: the fields, their types and their values."""

    every_s: float
    sent: Counter[str] = field(default_factory=Counter)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    invalid_count: int = 0
    expected: int = 0
    missing: int = 0
    untrue: list[dict[str, Any]] = field(default_factory=list)
    untrue_count: int = 0
    """Heartbeats with a value that disagrees with the simulator's own count for that agent."""
    last: dict[str, dict[str, Any]] = field(default_factory=dict)

    def beat(self, agent: str, metrics: dict[str, Any], seen: Seen | None = None, l0_items: int = 0) -> None:
        """One heartbeat; with ``seen``, its values are judged against what the simulator saw of ``agent``."""
        self.sent[agent] += 1
        problems = [
            name
            for name, kind in HEARTBEAT_FIELDS.items()
            if name not in metrics or not isinstance(metrics[name], kind) or isinstance(metrics[name], bool)
        ]
        ratio = metrics.get("mw_hit_ratio")
        if isinstance(ratio, float) and not 0.0 <= ratio <= 1.0:
            problems.append("mw_hit_ratio out of [0, 1]")
        if problems:
            self.invalid_count += 1
            if len(self.invalid) < MAX_EXAMPLES:
                self.invalid.append({"agent": agent, "problems": problems})
        elif seen is not None:
            self._judge_values(agent, metrics, seen, l0_items)
        self.last[agent] = metrics

    def _judge_values(self, agent: str, metrics: dict[str, Any], seen: Seen, l0_items: int) -> None:
        wrong = {
            name: [metrics[name], want]
            for name, want in expected_heartbeat(seen, l0_items).items()
            if metrics[name] != want
        }
        hits = seen.l0 + seen.l1 + seen.l2
        want_ratio = hits / (hits + seen.missed) if hits + seen.missed else 0.0
        if abs(metrics["mw_hit_ratio"] - want_ratio) > RATIO_TOLERANCE:
            wrong["mw_hit_ratio"] = [metrics["mw_hit_ratio"], round(want_ratio, 6)]
        if wrong:
            self.untrue_count += 1
            if len(self.untrue) < MAX_EXAMPLES:
                self.untrue.append({"agent": agent, "reported_vs_seen": wrong})

    def account(self, lifetimes: dict[str, float]) -> None:
        """Expected heartbeats: one per interval strictly inside each agent's life (a run stops before ``until``)."""
        self.expected = self.missing = 0
        for agent, lived in lifetimes.items():
            want = max(0, math.ceil(lived / self.every_s) - 1) if self.every_s > 0 else 0
            self.expected += want
            self.missing += max(0, want - self.sent.get(agent, 0))

    def fleet(self) -> dict[str, Any]:
        """The last heartbeat of every agent summed, as a fleet dashboard would."""
        hits = sum(m["mw_l0_hits"] + m["mw_l1_hits"] + m["mw_l2_hits"] for m in self.last.values())
        misses = sum(int(m.get("mw_misses", 0)) for m in self.last.values())
        return {
            "agents_reporting": len(self.last),
            "mw_hit_ratio": round(hits / (hits + misses), 6) if hits + misses else 0.0,
            "mw_task_cache_hits": sum(m["mw_task_cache_hits"] for m in self.last.values()),
            "mw_negative_cache_hits": sum(m["mw_negative_cache_hits"] for m in self.last.values()),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "every_s": self.every_s,
            "sent": sum(self.sent.values()),
            "expected": self.expected,
            "missing": self.missing,
            "invalid": self.invalid_count,
            "invalid_examples": self.invalid,
            "untrue": self.untrue_count,
            "untrue_examples": self.untrue,
            "fleet": self.fleet(),
        }


@dataclass
class DoublePrefix:
    """Double-prefixed keys seen in L2 (scans) or in the logs (``global:item:global:item``)."""

    l2_keys: set[str] = field(default_factory=set)
    log_lines: int = 0
    log_examples: list[str] = field(default_factory=list)
    scans: int = 0
    scans_failed: int = 0
    """Scans L2 did not answer (a fault window)."""

    def summary(self) -> dict[str, Any]:
        return {
            "scans": self.scans,
            "scans_failed": self.scans_failed,
            "l2_keys": len(self.l2_keys),
            "l2_examples": sorted(self.l2_keys)[:MAX_EXAMPLES],
            "log_lines": self.log_lines,
            "log_examples": self.log_examples,
        }
