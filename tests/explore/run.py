"""Run many seeds and sum up what they covered: the figures ``tools/explore`` and the CI test report."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .scheduler import Result, quiet, run_seed


@dataclass
class Figures:
    seeds: int = 0
    calls: int = 0
    loads: int = 0
    changes: int = 0
    events: int = 0
    faults: int = 0
    fault_kinds: Counter[str] = field(default_factory=Counter)
    lease_fault_seeds: int = 0
    """Seeds where a fault hit some key's lease (the one-load check was waived for those keys)."""
    excluded_seeds: int = 0
    """Seeds where that waiver hid a second load: excluded from the one-load invariant."""
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    endings: Counter[str] = field(default_factory=Counter)
    failures: list[Result] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(len(r.violations) for r in self.failures)

    def add(self, result: Result) -> None:
        h = result.history
        self.seeds += 1
        self.calls += len(h.calls)
        self.loads += sum(load.ok for load in h.loads)
        self.changes += len(h.changes)
        self.events += result.events
        self.faults += len(h.faults)
        self.fault_kinds.update(f.point.split(".")[0] + ":" + f.action.split(" ")[0] for f in h.faults)
        self.lease_fault_seeds += bool(h.lease_hit)
        self.excluded_seeds += bool(h.waived)
        self.transitions.update(h.transitions)
        self.endings.update(c.ended for c in h.calls)
        if result.violations:
            self.failures.append(result)

    def summary(self) -> str:
        pairs = sorted(self.transitions)
        lines = [
            f"seeds {self.seeds}, calls {self.calls}, loads {self.loads}, changes {self.changes}, "
            f"scheduler events {self.events}",
            f"faults injected {self.faults} ({', '.join(f'{k} {n}' for k, n in sorted(self.fault_kinds.items()))})",
            f"seeds with a fault on a lease {self.lease_fault_seeds}; excluded from the one-load check "
            f"(a second load there) {self.excluded_seeds}",
            f"call endings {dict(sorted(self.endings.items()))}",
            f"transitions covered {len(pairs)}: " + ", ".join(f"{a}->{b}" for a, b in pairs),
            f"violations {self.violations} in {len(self.failures)} seeds",
        ]
        return "\n".join(lines)


def explore(
    seeds: Iterable[int],
    *,
    progress: Callable[[Figures], None] | None = None,
    stop_at_first: bool = False,
    every: int = 500,
) -> Figures:
    figures = Figures()
    with quiet():
        for n, seed in enumerate(seeds, 1):
            result = run_seed(seed)
            figures.add(result)
            if n % 100 == 0:
                gc.collect()  # each seed runs with the collector off (see Explorer.run)
            if progress is not None and n % every == 0:
                progress(figures)
            if stop_at_first and result.violations:
                break
    return figures
