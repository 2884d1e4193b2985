"""What Mlt holds, version by version and since when, so that every answer a read returns can be judged.

The simulator is Mlt's only writer, so it knows when each record came to exist, when each version was superseded, and
how long the runtime may still serve the old answer: the *tolerance* of the record's class (:attr:`Truth.lag_s`), the
documented bound of the writer's way to the caches. A writer in the reader's process drops every copy before it
returns (``docs/runtime.md``: tolerance 0); one whose invalidation reaches this process over the bus gets
:data:`BUS_LAG_S`. An answer is judged against the moment its read *started*:

* a value of the current version, or of an older one superseded after the read started: fresh;
* an older version, from a read that started within the tolerance after the write: stale within the bounds;
* an older version later than that, a value of a record that never existed, ``None`` (or a negative-cache answer)
  for a record that existed before the read started by more than the tolerance: stale beyond the bounds.

Existence starts at creation (items seeded at t=0, tasks when created); ids that Mlt never had (the absent pool) never
exist, so ``None`` is their only right answer. A delete (``[mix]``'s deletes) supersedes the current version by an
*absent* one that no value names, and opens a span in which ``None`` is the answer; a later write re-creates the
record with the next version and closes the span (``None`` then stays acceptable for the tolerance). ``None`` is fresh
if the record did not exist at some instant between the read's start and its judgement.

A write whose store call failed *in doubt* (:attr:`mw.errors.MltUnavailable.in_doubt`: the statement had been sent)
may still land, later and in any order with the others (a stopped PostgreSQL runs what it received when it resumes).
Until Mlt's version count accounts for every such write (:meth:`Truth.landed`, from the next write's version), the
record's current answer and every doubted one are within the bounds (:meth:`Truth.doubted`), a doubted delete's
``None`` too; a doubted value superseded by a later write is then held to that write's tolerance like any other. A
doubted delete ends when Mlt shows it ran (:meth:`Truth.delete_ran`: a later delete finds nothing, a later write is
numbered 1 again); one that may not have run yet stays in doubt, since it may still land after the later calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf

FRESH, WITHIN, BEYOND = 0, 1, 2
"""The verdicts of :meth:`Truth.judge` and :meth:`Truth.judge_absent`."""

BUS_LAG_S = 0.25
"""The invalidation lag the runtime is held to for a writer in another process (pub/sub; ``docs/ray.md``'s
``lag_bound_s``): a copy may be served this long after the write. In-process writers are held to 0."""


@dataclass
class Versions:
    """One record: ``deadlines[v - 1]`` is when version ``v`` stopped being an acceptable answer (``inf``: current).

    ``born`` is when the record came to exist; ``None`` is an acceptable answer until ``born_deadline``.
    """

    superseded_at: list[float] = field(default_factory=lambda: [INF])
    deadlines: list[float] = field(default_factory=lambda: [INF])
    writers: list[str | None] = field(default_factory=lambda: [None])
    """``writers[v - 1]``: the node whose writer superseded version ``v`` (``None``: unknown, or current)."""
    local_deadlines: list[float] = field(default_factory=lambda: [INF])
    """``local_deadlines[v - 1]``: when version ``v`` stopped being acceptable to a reader on its writer's node."""
    born: float = -INF
    born_deadline: float = -INF
    absent: list[list[float]] = field(default_factory=list)
    """``[deleted_at, recreated_at, deadline]`` per delete: the record did not exist in between (``inf``: still
    gone), and ``None`` stays acceptable until ``deadline``."""

    @property
    def current(self) -> int:
        return len(self.deadlines)

    @property
    def gone(self) -> bool:
        """Deleted and not re-created: the current version is the absent one."""
        return bool(self.absent) and self.absent[-1][1] == INF


@dataclass
class Doubt:
    """Writes of one record that failed in doubt and are not yet known to have landed or not."""

    outstanding: int = 0
    """How many may still land (Mlt's version count has not accounted for them)."""
    labels: set[int] = field(default_factory=set)
    """The versions the doubted writes named (items); any of them may be what Mlt holds."""
    delete: bool = False
    """A doubted delete: ``None`` may be Mlt's answer, and its version count may restart at any later write."""


class Truth:
    """Existence and versions of items and tasks over simulated time, with the tolerance of each record class."""

    def __init__(self) -> None:
        self.records: dict[str, Versions] = {}
        self.current: dict[str, int] = {}
        """The current version by record (a fresh version's one dict lookup)."""
        self.latest: dict[str, object] = {}
        """The current value of records written with one (items): a fresh value is judged by a lookup and a compare,
        without parsing the version out of it."""
        self.lag_s: dict[str, float] = {"item": 0.0, "task": 0.0, "herd": 0.0}
        """Tolerance by record class: how long after an Mlt change the previous answer is still within the bounds.
        The workloads set it from their writers (0: in-process, at once; :data:`BUS_LAG_S`: over the bus)."""
        self.local_lag_s: dict[str, float] = {"item": 0.0, "task": 0.0, "herd": 0.0}
        """The tolerance for a reader on the writer's own node (its process): 0 unless the writer is elsewhere."""
        self.outages: list[tuple[float, float]] = []
        """``(start, until)``: a version superseded in ``[start, until)`` stays acceptable until ``until`` (L2 down
        with more than one node: the other nodes hear of the write only when their bus is back, and flush then)."""
        self._holds: dict[tuple[str, int], list[float]] = {}
        """Versions held open by lost invalidations: ``[losses holding it, the deadline it gets when released]``."""
        self.mlt_base: dict[str, int] = {}
        """The simulator's version of a record minus Mlt's (a record re-created after a delete is numbered from 1
        again; a doubted write that did not land leaves its version unused)."""
        self.doubts: dict[str, Doubt] = {}
        """Records with writes in doubt (see the module's docstring)."""
        self.doubt_counts: dict[str, int] = {"writes": 0, "landed": 0, "reads": 0}
        """Writes that failed in doubt, how many of them Mlt's versions showed to have landed, and reads judged
        within the bounds because their record was in doubt."""

    def created(
        self, record: str, version: int = 1, at: float = -INF, deadline: float | None = None, value: object = None
    ) -> None:
        """``record`` exists from ``at`` with ``version`` (``value``); ``None`` for it is acceptable until ``deadline``
        (default ``at``)."""
        versions = Versions(born=at, born_deadline=at if deadline is None else deadline)
        for _ in range(version - 1):
            versions.superseded_at.insert(0, -INF)
            versions.deadlines.insert(0, -INF)
            versions.writers.insert(0, None)
            versions.local_deadlines.insert(0, -INF)
        self.records[record] = versions
        self.current[record] = versions.current
        if value is not None:
            self.latest[record] = value

    def superseded(
        self,
        record: str,
        new_version: int,
        at: float,
        deadline: float,
        value: object = None,
        *,
        writer: str | None = None,
        local_deadline: float | None = None,
    ) -> None:
        """``new_version`` (``value``) was written at ``at``; older copies are acceptable until ``deadline``, and to a
        reader on the ``writer``'s node (its process) until ``local_deadline`` (default ``deadline``)."""
        versions = self.records.setdefault(record, Versions())
        local = deadline if local_deadline is None else local_deadline
        for start, until in self.outages:
            if start <= at < until:
                deadline = max(deadline, until)
        if versions.gone:  # a write re-creates a deleted record
            versions.absent[-1][1:] = [at, deadline]
        while versions.current < new_version:
            versions.superseded_at[-1] = at
            versions.deadlines[-1] = deadline
            versions.writers[-1] = writer
            versions.local_deadlines[-1] = local
            versions.superseded_at.append(INF)
            versions.deadlines.append(INF)
            versions.writers.append(None)
            versions.local_deadlines.append(INF)
        self.current[record] = versions.current
        if value is not None and record not in self.doubts:
            self.latest[record] = value
        else:
            self.latest.pop(record, None)

    def deleted(self, record: str, at: float, deadline: float) -> bool:
        """``record`` was deleted from Mlt at ``at``; its last value is acceptable until ``deadline``.

        False (nothing recorded) if it did not exist."""
        versions = self.records.get(record)
        if versions is None or versions.gone:
            return False
        absent_version = versions.current + 1
        self.superseded(record, absent_version, at, deadline)
        versions.absent.append([at, INF, INF])
        self.mlt_base[record] = absent_version
        return True

    def doubted(self, record: str, version: int | None = None, *, delete: bool = False) -> None:
        """A write of ``version`` (items: the version its value names; tasks: ``None``, Mlt numbers it) or a delete
        of ``record`` failed in doubt. Its current answer is no longer known to be the latest: no fresh shortcut."""
        doubt = self.doubts.setdefault(record, Doubt())
        doubt.outstanding += 1
        doubt.delete = doubt.delete or delete
        if version is not None:
            doubt.labels.add(version)
        self.latest.pop(record, None)
        self.doubt_counts["writes"] += 1

    def next_version(self, record: str) -> int:
        """The version a new write of ``record`` names: past the current one and every doubted one."""
        doubt = self.doubts.get(record)
        top = max(doubt.labels, default=0) if doubt is not None else 0
        return max(1, self.current.get(record, 0), top) + 1

    def landed(self, record: str, mlt_version: int, expected: int) -> set[int]:
        """A write of ``record`` succeeded and Mlt numbered it ``mlt_version`` where ``expected`` says no doubted
        write landed: the difference landed before it. Returns the doubted versions, once all are accounted for
        (for :meth:`settle`; else empty). Raises ``RuntimeError`` if no count of doubts explains the number."""
        doubt = self.doubts.get(record)
        if doubt is None or doubt.delete:
            if doubt is None and mlt_version != expected:
                raise RuntimeError(f"Mlt gave {record} version {mlt_version}, the simulator expected {expected}")
            return set()  # a doubted delete may have restarted the count: the doubt stays until delete_ran()
        landed = mlt_version - expected
        if not 0 <= landed <= doubt.outstanding:
            raise RuntimeError(
                f"Mlt gave {record} version {mlt_version}: {expected} with at most {doubt.outstanding} doubted writes"
            )
        self.doubt_counts["landed"] += landed
        doubt.outstanding -= landed
        if doubt.outstanding:
            return set()
        del self.doubts[record]
        return doubt.labels

    def delete_ran(self, record: str, at: float, deadline: float, *, recreated: bool) -> bool:
        """Mlt showed at ``at`` that a doubted delete of ``record`` ran: a later delete found nothing, or a later write
        was numbered 1 again (``recreated``). If that delete is the record's only doubt, nothing of it can land any
        more: the doubt ends, and the record is gone from ``at`` (its last value acceptable until ``deadline``), or, for
        the write about to be recorded with :meth:`superseded`, gone until it. Returns whether the doubt ended."""
        doubt = self.doubts.get(record)
        versions = self.records.get(record)
        if doubt is None or not doubt.delete or doubt.outstanding != 1 or doubt.labels or versions is None:
            return False
        if versions.gone:
            return False
        del self.doubts[record]
        self.doubt_counts["landed"] += 1
        if recreated:
            versions.absent.append([at, INF, INF])  # closed by the write's superseded()
        else:
            self.deleted(record, at, deadline)
        return True

    def settle(self, record: str, labels: set[int]) -> None:
        """After :meth:`superseded` by the write whose Mlt version accounted for the last doubt: a doubted version
        may have landed after an earlier write, so it was Mlt's answer until this one; it is held to this write's
        bound (that of the version just superseded), not to the earlier one's."""
        versions = self.records[record]
        last = versions.current - 2
        for label in labels:
            if label - 1 < last:
                versions.superseded_at[label - 1] = versions.superseded_at[last]
                versions.deadlines[label - 1] = versions.deadlines[last]
                versions.local_deadlines[label - 1] = versions.local_deadlines[last]
                versions.writers[label - 1] = versions.writers[last]

    def doubt_summary(self) -> dict[str, int]:
        """``result["runs"][...]["stale"]["in_doubt"]``: :attr:`doubt_counts` and the records still in doubt."""
        return {**self.doubt_counts, "open": len(self.doubts)}

    def judge(self, record: str, version: int, started_at: float, reader: str | None = None) -> int:
        """A read that started at ``started_at`` on node ``reader`` returned ``version`` of ``record``: FRESH, WITHIN or
        BEYOND. A reader on the writer's node is held to the in-process bound of that write."""
        current = self.current.get(record, 0)
        doubt = self.doubts.get(record)
        if doubt is not None and (
            version == current
            or version in doubt.labels
            or (not doubt.labels and current < version <= current + doubt.outstanding)
        ):
            self.doubt_counts["reads"] += 1
            return WITHIN
        if version == current > 0:
            return BEYOND if self.records[record].gone else FRESH  # no value names the absent version
        if current == 0 or version < 1 or version > current:
            return BEYOND  # a value of a record that never existed, or of a version never written
        versions = self.records[record]
        if versions.superseded_at[version - 1] > started_at:
            return FRESH
        if reader is not None and reader == versions.writers[version - 1]:
            deadline = versions.local_deadlines[version - 1]
        else:
            deadline = versions.deadlines[version - 1]
        return WITHIN if started_at <= deadline else BEYOND

    def judge_absent(self, record: str, started_at: float) -> int:
        """A read that started at ``started_at`` answered that ``record`` does not exist (``None`` or negative)."""
        versions = self.records.get(record)
        if versions is None or started_at < versions.born:
            return FRESH
        doubt = self.doubts.get(record)
        if doubt is not None and doubt.delete:
            self.doubt_counts["reads"] += 1
            return WITHIN
        within = started_at <= versions.born_deadline
        for _deleted_at, recreated_at, deadline in versions.absent:
            if recreated_at > started_at:  # gone at some instant since the read started (a span never opens later)
                return FRESH
            within = within or started_at <= deadline
        return WITHIN if within else BEYOND

    def hold(self, record: str, now: float) -> list[tuple[str, int]]:
        """The invalidation of ``record`` sent at ``now`` was lost: every older version still acceptable now (and a
        ``None`` still acceptable after a re-creation) stays acceptable until :meth:`release` (the receivers cannot
        know yet). Returns what it held: ``(record, v)`` for version ``v``, ``(record, -n)`` for absent span ``n``."""
        versions = self.records.get(record)
        if versions is None:
            return []
        held = []
        for v in range(1, versions.current):
            if versions.deadlines[v - 1] >= now:
                held.append(self._hold(versions.deadlines, v - 1, (record, v)))
        for n, span in enumerate(versions.absent, 1):
            if span[1] <= now <= span[2]:
                held.append(self._hold(span, 2, (record, -n)))
        return held

    def _hold(self, deadlines: list[float], index: int, what: tuple[str, int]) -> tuple[str, int]:
        entry = self._holds.setdefault(what, [0, deadlines[index]])
        entry[0] += 1
        deadlines[index] = INF
        return what

    def release(self, held: list[tuple[str, int]], deadline: float) -> None:
        """The loss behind ``held`` (from :meth:`hold`) is detectable now: what it held is acceptable until
        ``deadline`` (or its own deadline, if later), once no other loss holds it."""
        for what in held:
            entry = self._holds[what]
            entry[0] -= 1
            entry[1] = max(entry[1], deadline)
            if entry[0] == 0:
                del self._holds[what]
                record, v = what
                versions = self.records[record]
                if v > 0:
                    versions.deadlines[v - 1] = entry[1]
                else:
                    versions.absent[-v - 1][2] = entry[1]

    def end_open_outages(self, until: float) -> None:
        """An outage known only to have begun (``until`` ``inf``: a real failover whose promotion was pending) ended:
        what was superseded meanwhile, left acceptable for ever, is acceptable until ``until``. Held versions keep
        their hold; the deadline they get when released is capped the same way."""
        held = set(self._holds)
        for record, versions in self.records.items():
            for index, at in enumerate(versions.superseded_at):
                if at < INF and versions.deadlines[index] == INF and (record, index + 1) not in held:
                    versions.deadlines[index] = until
            for n, span in enumerate(versions.absent, 1):
                if span[1] < INF and span[2] == INF and (record, -n) not in held:
                    span[2] = until
        for entry in self._holds.values():
            if entry[1] == INF:
                entry[1] = until

    def version(self, record: str) -> int:
        """The current version of ``record`` (0: it never existed; a deleted record's is its absent version)."""
        return self.current.get(record, 0)

    def exists(self, record: str) -> bool:
        versions = self.records.get(record)
        return versions is not None and not versions.gone
