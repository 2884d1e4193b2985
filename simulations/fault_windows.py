"""A scenario's ``[[faults]]`` applied in simulated time, through the runtime's fault seam (:mod:`mw.faults`).

* ``l2_down``: every L2 call boundary (``l2.*``, commands and replies alike) fails while the window is open, as a
  server that stopped answering would: the runtime sees a connection error, marks L2 down and degrades to Mlt.
* ``l2_slow``: every L2 round trip costs ``delay_ms`` of simulated time to the agent that makes it (the model
  yields what the injector charged); past the runtime's socket timeout (``MW_REDIS_TIMEOUT_S``) the command fails
  before it runs instead, with redis-py's ``TimeoutError``, after that timeout's worth of simulated time.
* ``mlt_down``: every Mlt call boundary (``mlt.<operation>``) fails, as a PostgreSQL that stopped answering: the
  caller waits ``MW_MLT_TIMEOUT_S`` of simulated time, then the store raises ``MltUnavailable`` (and discards the
  connection, as a broken one). ``mlt.connect`` is left to answer: PostgreSQL's pool waits for a connection on the
  wall clock, so a refused connect would cost each call ``MW_MLT_TIMEOUT_S`` of real time, not simulated.
* ``agent_crash`` needs no seam: the model kills the agents (:meth:`simulations.model.Model.crash_agent`).

Windows open and close on the simulated clock, so a seed replays its faults to the call. Time is charged only to
calls made on the simulation's thread (the runtime's replay thread waits for nobody the simulator models). The
simulator's own L2 calls (its scans for double-prefixed keys, its TTL probes) go through the same seam and fail
too; it counts what it could not look at instead of guessing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeout

from mw.faults import Action, Fail
from simulations.scenario import FAULT_KINDS, FaultWindow


class WindowInjector:
    """An :data:`mw.faults.Injector` that acts while a window is open at ``now()`` (simulated seconds)."""

    def __init__(
        self,
        windows: Sequence[FaultWindow],
        now: Callable[[], float],
        *,
        redis_timeout_s: float = 0.5,
        mlt_timeout_s: float = 5.0,
    ) -> None:
        self.down = [(w.at_s, w.end_s) for w in windows if w.kind == "l2_down"]
        self.failovers = [(w.at_s, w.end_s) for w in windows if w.kind == "l2_failover"]
        """Real only (a killed primary, :mod:`simulations.real_faults`): never failed here, but L2 is unreachable for
        part of the window, so the stampede check counts it as an outage."""
        self.slow = [(w.at_s, w.end_s, (w.delay_ms or 0.0) / 1000) for w in windows if w.kind == "l2_slow"]
        self.mlt_down = [(w.at_s, w.end_s) for w in windows if w.kind == "mlt_down"]
        self.now = now
        self.redis_timeout_s = redis_timeout_s
        self.mlt_timeout_s = mlt_timeout_s
        self.failed_calls = 0
        """L2 calls failed (``l2_down``, and ``l2_slow`` past the socket timeout)."""
        self.slowed_calls = 0
        self.failed_mlt_calls = 0
        self.owed = 0.0
        """Simulated seconds the simulation thread's calls cost since :meth:`take` (``l2_slow``, ``mlt_down``)."""
        self.charges = bool(self.slow or self.mlt_down)
        """Whether calls can cost simulated time (the model asks :meth:`take` around its agents' calls)."""
        self._thread = threading.get_ident()
        self._l2 = bool(self.down or self.slow)

    def l2_outages(self) -> list[tuple[float, float]]:
        """The windows in which L2 fails every call: no cluster-wide copy or lease (the stampede check's outages)."""
        failing = [(start, end) for start, end, delay in self.slow if delay > self.redis_timeout_s]
        return sorted(self.down + failing + self.failovers)

    def take(self) -> float:
        """What the calls since the last take cost (simulated seconds), and start counting again."""
        owed, self.owed = self.owed, 0.0
        return owed

    def __call__(self, point: str, _key: str | None) -> Action | None:
        if point.startswith("l2."):
            return self._l2_call(point) if self._l2 else None
        if self.mlt_down and point.startswith("mlt.") and point != "mlt.connect" and not point.endswith(".reply"):
            t = self.now()
            for start, end in self.mlt_down:
                if start <= t < end:
                    self.failed_mlt_calls += 1
                    self._charge(self.mlt_timeout_s)
                    return Fail(
                        ConnectionError(
                            f"no answer within {self.mlt_timeout_s:g}s: Mlt down from simulated {start:g} s to "
                            f"{end:g} s (injected)"
                        )
                    )
        return None

    def _l2_call(self, point: str) -> Action | None:
        t = self.now()
        for start, end in self.down:
            if start <= t < end:
                self.failed_calls += 1
                return Fail(ConnectionError(f"Redis down from simulated {start:g} s to {end:g} s (injected)"))
        if point.endswith(".reply"):  # one round trip: charged at its command
            return None
        for start, end, delay in self.slow:
            if start <= t < end:
                if delay > self.redis_timeout_s:
                    self.failed_calls += 1
                    self._charge(self.redis_timeout_s)
                    return Fail(
                        RedisTimeout(
                            f"Timeout reading from socket: Redis {delay * 1000:g} ms slow from simulated {start:g} s "
                            f"to {end:g} s, over the {self.redis_timeout_s:g} s timeout (injected)"
                        )
                    )
                self.slowed_calls += 1
                self._charge(delay)
                return None
        return None

    def _charge(self, seconds: float) -> None:
        if threading.get_ident() == self._thread:
            self.owed += seconds

    def counts(self) -> dict[str, int]:
        return {
            "failed_l2_calls": self.failed_calls,
            "slowed_l2_calls": self.slowed_calls,
            "failed_mlt_calls": self.failed_mlt_calls,
        }


Span = tuple[float, float]
"""``(start, end)`` in simulated seconds."""


def stretched(spans: Sequence[Span], span: Span, until: float) -> list[Span]:
    """``spans`` with ``span`` (each copy of it) now ending at ``until``; the others as they were."""
    return [(start, until) if (start, end) == span else (start, end) for start, end in spans]


def what(window: FaultWindow) -> str:
    """How reports and plots name a window."""
    label = FAULT_KINDS[window.kind]
    if window.kind == "l2_slow":
        return f"{label} ({window.delay_ms:g} ms)"
    if window.kind == "agent_crash":
        n = window.crashes
        return f"{n} agent{'s' if n > 1 else ''} crash"
    return label


def described(windows: Sequence[FaultWindow]) -> list[dict[str, Any]]:
    """``result["faults"]``: the windows as the plots shade them."""
    return [{"start_s": w.at_s, "end_s": w.end_s, "what": what(w)} for w in windows]
