"""A scenario's ``[[faults]]`` applied in simulated time, through the runtime's fault seam (:mod:`mw.faults`).

The injector fails every L2 call boundary (``l2.*``, commands and replies alike) while an ``l2_down`` window is open,
as a server that stopped answering would: the runtime sees a connection error, marks L2 down and degrades to Mlt.
Windows open and close on the simulated clock, so a seed replays its outage to the call. The simulator's own L2 calls
(its scans for double-prefixed keys, its TTL probes) go through the same seam and fail too; it counts what it could
not look at instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mw.faults import Action, Fail
from simulations.scenario import FAULT_KINDS, FaultWindow


class WindowInjector:
    """An :data:`mw.faults.Injector` that acts while a window is open at ``now()`` (simulated seconds)."""

    def __init__(self, windows: Sequence[FaultWindow], now: Callable[[], float]) -> None:
        self.down = [(w.at_s, w.end_s) for w in windows if w.kind == "l2_down"]
        self.now = now
        self.failed_calls = 0

    def __call__(self, point: str, _key: str | None) -> Action | None:
        if not self.down or not point.startswith("l2."):
            return None
        t = self.now()
        for start, end in self.down:
            if start <= t < end:
                self.failed_calls += 1
                return Fail(ConnectionError(f"Redis down from simulated {start:g} s to {end:g} s (injected)"))
        return None


def described(windows: Sequence[FaultWindow]) -> list[dict[str, Any]]:
    """``result["faults"]``: the windows as the plots shade them."""
    return [{"start_s": w.at_s, "end_s": w.end_s, "what": FAULT_KINDS[w.kind]} for w in windows]
