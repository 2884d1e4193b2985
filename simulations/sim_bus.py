"""The simulated invalidation bus: every node is a cluster of its own, and the simulator carries their messages.

Each simulated node is one ``mw`` cluster (its own L1, L2 client, Mlt pool and bus origin) on the run's one L2 server,
as separate processes would be. Their buses have a :class:`SimBus` as transport (:class:`mw.invalidation.BusTransport`)
instead of Redis pub/sub, so no subscriber thread runs and a seed still replays: each message a node publishes with its
L2 command is delivered to every other node's bus, through the runtime's own receive path
(:meth:`mw.invalidation.InvalidationBus.deliver`: sequences, gap detection, flushes), after a lag drawn from
:class:`BusLag` with the run's seeded stream. Every :data:`CHECK_EVERY_S` of simulated time each bus looks for holes
(:meth:`~mw.invalidation.InvalidationBus.check`), as the subscriber thread does between messages.

A ``pubsub_dropped`` fault window drops every message published in it. The runtime's promise for a lost message is a
flush of the receiver's local tiers :data:`mw.invalidation.GAP_GRACE_S` after the origin's next message arrives (the
hole shows only then); the oracle holds the versions a dropped message invalidated to exactly that, and no longer:
their deadline is open while the drop is unseen and set, when the origin's next message is published, to its last
arrival plus the grace and one check interval (:meth:`simulations.truth.Truth.hold`).

While L2 is down (``l2_down``) no node can publish, and none is subscribed: a node keeps its copies (the runtime's
documented limit) until its bus is back, at the first check after the window, and flushes then
(:meth:`~mw.invalidation.InvalidationBus.reconnected`). The oracle holds cross-node readers of a write made in the
window to that instant (:attr:`simulations.truth.Truth.outages`).
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from mw.invalidation import GAP_GRACE_S, InvalidationBus
from mw.keys import try_parse_key
from simulations.truth import BUS_LAG_S, Truth

BUS_LAG_P50_S = 0.00040
BUS_LAG_P99_S = 0.0034
"""Publish-to-apply lag of an invalidation to another process on a local ``redis-server`` (the median of four runs of
``python benchmarks/invalidation_lag.py --keys 2000`` on the busy 2-vCPU machine: p50 0.34-0.47 ms, p99 1.2-14.8 ms,
max 4.6-242 ms)."""

CHECK_EVERY_S = 0.2
"""How often each bus looks for holes: the subscriber thread's read timeout."""

_Z99 = 2.326347874


@dataclass(frozen=True)
class BusLag:
    """Lognormal lag (from its median and p99) cut at ``max_s``: the bound the oracle holds cross-node writers to."""

    p50_s: float = BUS_LAG_P50_S
    p99_s: float = BUS_LAG_P99_S
    max_s: float = BUS_LAG_S

    def __post_init__(self) -> None:
        if not 0 < self.p50_s <= self.p99_s <= self.max_s:
            raise ValueError(f"bus lag needs 0 < p50_s <= p99_s <= max_s, got {self.p50_s}, {self.p99_s}, {self.max_s}")

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """Draws from ``rng`` only, so the lags depend on its seed and on how many were drawn."""
        mu, sigma, cap = math.log(self.p50_s), math.log(self.p99_s / self.p50_s) / _Z99, self.max_s

        def draw() -> float:
            return min(cap, rng.lognormvariate(mu, sigma))

        return draw


def record_of(key: str) -> str | None:
    """The truth's record of a cache key (``global:item:{kind}:{scope}:{id}`` and its negative marker: ``id``)."""
    parsed = try_parse_key(key)
    if parsed is not None and parsed.family == "negative":
        parsed = parsed.target
    if parsed is None or parsed.family != "global_typed":
        return None
    return parsed.item_id


class SimBus:
    """The transport of every node's bus in one run (see the module doc); counts what it carried."""

    def __init__(
        self,
        env: simpy.Environment,
        clock: Callable[[], float],
        rng: random.Random,
        *,
        lag: BusLag | None = None,
        drops: Sequence[tuple[float, float]] = (),
        outages: Sequence[tuple[float, float]] = (),
        truth: Truth | None = None,
    ) -> None:
        self.env = env
        self.clock = clock
        self.lag = BusLag() if lag is None else lag
        self._draw = self.lag.sampler(rng)
        self.drops = list(drops)
        """``(start, end)`` of the ``pubsub_dropped`` windows, simulated seconds."""
        self.outages = sorted(end for _, end in outages)
        """Ends of the ``l2_down`` windows: the buses lost their connection with Redis and have it back at the first
        check from then on (:meth:`~mw.invalidation.InvalidationBus.reconnected`: a flush each)."""
        self.truth = truth
        self.buses: list[InvalidationBus] = []
        """The attached buses, in attach order (the order of their deliveries and checks)."""
        self.known: list[InvalidationBus] = []
        """Every bus ever attached (the summary reads their counters after the run closed them)."""
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self.max_lag_s = 0.0
        self._held: dict[str, list[tuple[str, int]]] = {}
        """Versions held open by each origin's dropped messages, until its next message is published."""
        self._thread = threading.get_ident()
        self._inbox: list[tuple[InvalidationBus, str, bytes]] = []
        self._inbox_lock = threading.Lock()

    # --- BusTransport ---------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock()

    def attach(self, bus: InvalidationBus) -> None:
        self.buses.append(bus)
        self.known.append(bus)

    def detach(self, bus: InvalidationBus) -> None:
        if bus in self.buses:
            self.buses.remove(bus)

    def send(self, bus: InvalidationBus, channel: str, payload: bytes) -> None:
        """A message published now; one from another thread (the runtime's replay after an outage) waits in an inbox
        for the next check, since SimPy's schedule is the simulation thread's alone."""
        if threading.get_ident() != self._thread:
            with self._inbox_lock:
                self._inbox.append((bus, channel, payload))
            return
        self._send(bus, channel, payload)

    # --- carrying -------------------------------------------------------------------------------------
    def _send(self, bus: InvalidationBus, channel: str, payload: bytes) -> None:
        self.sent += 1
        now = self.env.now
        if any(start <= now < end for start, end in self.drops):
            self.dropped += 1
            self._hold(bus.origin, payload, now)
            return
        last = now
        for other in list(self.buses):
            if other is bus:
                continue
            lag = self._draw()
            self.max_lag_s = max(self.max_lag_s, lag)
            arrival = self.env.timeout(lag)
            arrival.callbacks.append(_Arrival(self, other, channel, payload))
            last = max(last, now + lag)
        held = self._held.pop(bus.origin, None)
        if held and self.truth is not None:
            self.truth.release(held, last + GAP_GRACE_S + CHECK_EVERY_S + 1e-6)

    def _hold(self, origin: str, payload: bytes, now: float) -> None:
        truth = self.truth
        if truth is None:
            return
        try:
            body = json.loads(payload)
        except ValueError:
            return
        keys: list[Any] = list(body.get("k", ())) if isinstance(body, dict) else []
        if isinstance(body, dict) and body.get("f"):
            records = list(truth.records)
        else:
            records = list(dict.fromkeys(r for r in map(record_of, map(str, keys)) if r is not None))
        held = self._held.setdefault(origin, [])
        for record in records:
            held.extend(truth.hold(record, now))

    def run(self) -> Any:
        """The buses' gap checks every :data:`CHECK_EVERY_S`, their reconnection after L2 was down, and the messages
        other threads sent meanwhile."""
        while True:
            yield self.env.timeout(CHECK_EVERY_S)
            if self._inbox:
                with self._inbox_lock:
                    waiting, self._inbox = self._inbox, []
                for bus, channel, payload in waiting:
                    self._send(bus, channel, payload)
            reconnect = False
            while self.outages and self.outages[0] <= self.env.now:
                self.outages.pop(0)
                reconnect = True
            for bus in list(self.buses):
                if reconnect:
                    bus.reconnected()
                bus.check()

    def summary(self) -> dict[str, Any]:
        """``result["runs"][...]["bus"]``: what was carried, and the receivers' own view (flushes, lag)."""
        lags = [b.lag.summary() for b in self.known]
        return {
            "pubsub": bool(self.known),
            "transport": "simulated",
            "lag": {"p50_s": self.lag.p50_s, "p99_s": self.lag.p99_s, "max_s": self.lag.max_s},
            "sent": self.sent,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "max_lag_ms": round(self.max_lag_s * 1000, 3),
            "flushes": sum(b.flushes for b in self.known),
            "received": sum(b.received for b in self.known),
            "max_applied_lag_ms": round(max((s["max_ms"] for s in lags), default=0.0), 3),
        }


def redis_bus_summary(pubsub: bool, lags: Sequence[dict[str, float]], received: int, flushes: int) -> dict[str, Any]:
    """The ``bus`` entry of a run whose nodes use Redis pub/sub (``--realtime`` on a real backend, the Ray engine):
    the fields of :meth:`SimBus.summary`, ``lag`` from the receivers' own figures (``LagStats.summary``), what only
    the simulated bus can count ``None``."""
    counted = [lag for lag in lags if lag.get("count")]

    def worst(field: str) -> float:
        return max((lag[field] for lag in counted), default=0.0) / 1000

    return {
        "pubsub": pubsub,
        "transport": "redis",
        "lag": {"p50_s": worst("p50_ms"), "p99_s": worst("p99_ms"), "max_s": worst("max_ms")},
        "sent": None,
        "delivered": None,
        "dropped": 0,
        "max_lag_ms": None,
        "flushes": flushes,
        "received": received,
        "max_applied_lag_ms": round(worst("max_ms") * 1000, 3),
    }


class _Arrival:
    """One message reaching one bus (a callable object: no closure per delivery)."""

    __slots__ = ("bus", "carrier", "channel", "payload")

    def __init__(self, carrier: SimBus, bus: InvalidationBus, channel: str, payload: bytes) -> None:
        self.carrier, self.bus, self.channel, self.payload = carrier, bus, channel, payload

    def __call__(self, _event: simpy.Event) -> None:
        self.carrier.delivered += 1
        self.bus.deliver(self.channel, self.payload)


__all__ = ["BUS_LAG_P50_S", "BUS_LAG_P99_S", "CHECK_EVERY_S", "BusLag", "SimBus", "record_of", "redis_bus_summary"]
