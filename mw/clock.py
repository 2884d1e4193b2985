"""The one time seam: every expiry decision calls a clock, never ``time.time`` directly.

A clock is any zero-argument callable returning epoch seconds as a float. The system clock is the
default; the plugin's :class:`ManualClock` and the simulator's SimPy clock plug into the same seam, so
TTLs can be stepped without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]

system_clock: Clock = time.time


class ManualClock:
    """A clock that moves only when told to. Thread-safe; never goes backwards."""

    __slots__ = ("_lock", "_now")

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards by {seconds!r} s")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, epoch_s: float) -> None:
        with self._lock:
            if epoch_s < self._now:
                raise ValueError(f"cannot move a clock backwards to {epoch_s!r}")
            self._now = float(epoch_s)
