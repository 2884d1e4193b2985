"""What Mlt holds, version by version, so that every value a read returns can be judged.

The simulator is Mlt's only writer, so it knows when each version of a record was superseded and when the caches were
told (the invalidation or the write-through that followed). A read that *started* after that deadline and still
returned the old version is a stale read beyond the bounds; one that started between the Mlt write and the deadline is
stale within the bounds (allowed: e.g. a writer that relies on the TTL instead of invalidating).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf


@dataclass
class Versions:
    """One record: ``deadlines[v - 1]`` is when version ``v`` stopped being an acceptable answer (``inf``: current)."""

    superseded_at: list[float] = field(default_factory=lambda: [INF])
    deadlines: list[float] = field(default_factory=lambda: [INF])

    @property
    def current(self) -> int:
        return len(self.deadlines)


class Truth:
    """Versions of items and tasks over simulated time."""

    def __init__(self) -> None:
        self.records: dict[str, Versions] = {}

    def created(self, record: str, version: int = 1) -> None:
        versions = Versions()
        for _ in range(version - 1):
            versions.superseded_at.insert(0, -INF)
            versions.deadlines.insert(0, -INF)
        self.records[record] = versions

    def superseded(self, record: str, new_version: int, at: float, deadline: float) -> None:
        """``new_version`` was written at ``at``; older copies are acceptable until ``deadline``."""
        versions = self.records.setdefault(record, Versions())
        while versions.current < new_version:
            versions.superseded_at[-1] = at
            versions.deadlines[-1] = deadline
            versions.superseded_at.append(INF)
            versions.deadlines.append(INF)

    def judge(self, record: str, version: int, started_at: float) -> int:
        """0: fresh; 1: stale within the bounds; 2: stale beyond them (a violation)."""
        versions = self.records.get(record)
        if versions is None or version >= versions.current:
            return 0
        if version < 1:
            return 2
        if versions.superseded_at[version - 1] > started_at:
            return 0
        return 1 if started_at <= versions.deadlines[version - 1] else 2

    def version(self, record: str) -> int:
        versions = self.records.get(record)
        return 0 if versions is None else versions.current
