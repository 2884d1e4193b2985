"""What every explored schedule must satisfy, checked on the history the scheduler records.

1. **One load per key per epoch**, unless a fault hit that key's lease. An epoch of a key ends when L2
   stops holding a valid value or negative marker for it: the entry's expiry (the earlier of its ``PX``
   and its envelope's ``expire_at``), a write or a delete of the key. A load counts if it returned a
   value (a failed or killed load is retried by design). A fault "hit the lease" when it was injected
   while the caller was in a lease step (acquire, recheck, load, fill, release) or on a lease extension:
   such keys are excluded for the seed, and counted.
2. **Every call ends within** :data:`CALL_BOUND_S` of virtual time (a hang until ``MW_LOAD_TIMEOUT_S``,
   set above it, is caught), and every call ends before the schedule does.
3. **No stale read beyond the bound:** a read that began at ``s`` returns a version at least as new as
   every change (write, invalidation, delete) that reached L2 before ``s`` in its own cluster, or before
   ``s - BUS_BOUND_S`` in another (the invalidation's delivery delay, or the gap grace before a flush when
   the message was lost). ``None`` is fine only if the store held the key absent at such a version.
4. **No exception but the documented ones:** ``LoadTimeout``, the ``TierUnavailable`` family,
   ``MltUnavailable``, the loader's own error; a caller's own cancellation is its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mw.errors import LoadTimeout, MltUnavailable, TierUnavailable

CALL_BOUND_S = 25.0
"""Longest legitimate call in the scenarios: a 7 s load that fails, its takeover, a leaked lease, delays."""

BUS_DELAY_S = 0.05
"""Longest delivery delay of an invalidation between clusters in the modelled bus."""

GAP_GRACE_S = 0.5
"""A lost invalidation is noticed (and the cluster flushed) this long after it was sent (``mw.invalidation``)."""

BUS_BOUND_S = GAP_GRACE_S + BUS_DELAY_S + 0.01
"""How long another cluster may serve a copy a change replaced: the documented bound of the bus."""

LEASE_STEPS = frozenset({"acquire", "recheck", "load", "fill", "release", "extend"})


class LoaderError(Exception):
    """The loader's own failure (the caller's loader raised)."""


DOCUMENTED = (LoadTimeout, TierUnavailable, MltUnavailable, LoaderError)


@dataclass
class Change:
    """A write, invalidation or delete: the store's new version, and when it reached L2."""

    key: str
    version: int
    present: bool
    cluster: int
    at: float
    landed_at: float | None = None
    landed_seq: int = 0
    """Order among the events of one virtual instant (a read that began in the same instant, before it)."""


@dataclass
class CallRecord:
    id: int
    key: str
    cluster: int
    mode: str
    start: float
    start_seq: int = 0
    end: float | None = None
    value: Any = None
    error: BaseException | None = None
    ended: str = ""
    """``value``, ``error``, ``cancelled`` (its own), ``closed`` (its loop closed) or empty (never ended)."""
    trace: list[str] = field(default_factory=lambda: ["start"])


@dataclass
class LoadRecord:
    key: str
    epoch: int
    call: int
    start: float
    end: float | None = None
    ok: bool = False


@dataclass
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class Fault:
    at: float
    call: int | None
    point: str
    key: str | None
    action: str
    step: str


class History:
    """Everything one schedule did that the invariants look at."""

    def __init__(self, origin: float = 0.0) -> None:
        self.origin = origin
        """The virtual time the schedule began: messages give times from it."""
        self.calls: list[CallRecord] = []
        self.loads: list[LoadRecord] = []
        self.changes: list[Change] = []
        self.faults: list[Fault] = []
        self.epoch: Counter[str] = Counter()
        self.live_until: dict[tuple[str, str], float] = {}
        self.lease_hit: set[str] = set()
        self.transitions: Counter[tuple[str, str]] = Counter()
        self.waived: set[str] = set()

    # --- epochs --------------------------------------------------------------------------------------
    def reset(self, key: str) -> None:
        """A write or delete of ``key`` reached L2: a new epoch."""
        self.epoch[key] += 1
        self.live_until.pop((key, "value"), None)
        self.live_until.pop((key, "neg"), None)

    def filled(self, key: str, kind: str, until: float) -> None:
        self.live_until[(key, kind)] = until

    def gone(self, key: str, kind: str) -> None:
        if self.live_until.pop((key, kind), None) is not None:
            self.epoch[key] += 1

    def tick(self, now: float) -> None:
        for (key, kind), until in list(self.live_until.items()):
            if until <= now:
                self.gone(key, kind)

    # --- checks --------------------------------------------------------------------------------------
    def fault(self, fault: Fault) -> None:
        self.faults.append(fault)
        if fault.key is not None and fault.step in LEASE_STEPS:
            self.lease_hit.add(fault.key)

    def record_trace(self, call: CallRecord) -> None:
        for a, b in zip(call.trace, call.trace[1:], strict=False):
            self.transitions[(a, b)] += 1

    def check(self, absent_versions: dict[str, list[int]], bus_bound_s: float = BUS_BOUND_S) -> list[Violation]:
        out: list[Violation] = []
        out += self._one_load()
        out += self._bounded()
        out += self._fresh(absent_versions, bus_bound_s)
        out += self._documented()
        return out

    def _one_load(self) -> list[Violation]:
        out = []
        per: dict[tuple[str, int], list[LoadRecord]] = {}
        for load in self.loads:
            if load.ok:
                per.setdefault((load.key, load.epoch), []).append(load)
        for (key, epoch), loads in sorted(per.items()):
            if len(loads) < 2:
                continue
            if key in self.lease_hit:
                self.waived.add(key)
                continue
            calls = ", ".join(f"call {x.call} at t={x.start - self.origin:.3f}" for x in loads)
            out.append(Violation("double load", f"{key} loaded {len(loads)} times in epoch {epoch}: {calls}"))
        return out

    def _bounded(self) -> list[Violation]:
        out = []
        for c in self.calls:
            if not c.ended:
                out.append(
                    Violation("hang", f"call {c.id} ({c.mode} {c.key}) from t={c.start - self.origin:.3f} never ended")
                )
            elif c.end is not None and c.end - c.start > CALL_BOUND_S:
                out.append(
                    Violation(
                        "unbounded",
                        f"call {c.id} ({c.mode} {c.key}) took {c.end - c.start:.3f}s > {CALL_BOUND_S}s "
                        f"({c.ended}: {c.error!r})",
                    )
                )
        return out

    def _fresh(self, absent_versions: dict[str, list[int]], bus_bound_s: float) -> list[Violation]:
        out = []
        for c in self.calls:
            if c.ended != "value":
                continue
            floor = 0
            for ch in self.changes:
                if ch.key != c.key or ch.landed_at is None:
                    continue
                if ch.cluster == c.cluster:
                    before = (ch.landed_at, ch.landed_seq) < (c.start, c.start_seq)
                else:
                    before = ch.landed_at <= c.start - bus_bound_s
                if before:
                    floor = max(floor, ch.version)
            if c.value is None:
                ok = any(v >= floor for v in absent_versions.get(c.key, ()))
                got = "None (absent)"
            else:
                ok = isinstance(c.value, dict) and c.value.get("v", -1) >= floor
                got = repr(c.value)
            if not ok:
                out.append(
                    Violation(
                        "stale read",
                        f"call {c.id} ({c.mode} {c.key}, cluster {c.cluster}) began at "
                        f"t={c.start - self.origin:.3f} and got {got}; version {floor} had reached L2 before",
                    )
                )
        return out

    def _documented(self) -> list[Violation]:
        out = []
        for c in self.calls:
            if c.ended != "error" or c.error is None:
                continue
            if isinstance(c.error, asyncio.CancelledError) or not isinstance(c.error, DOCUMENTED):
                out.append(
                    Violation("exception", f"call {c.id} ({c.mode} {c.key}) raised {type(c.error).__name__}: {c.error}")
                )
        return out
