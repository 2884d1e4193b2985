"""Invalidation that reaches other processes: a Redis pub/sub bus beside L2.

Every delete, invalidation and write of a shared key publishes ``{"o": origin, "s": seq, "k": keys,
"t": sent_at}`` on ``mw:inv`` in the same round trip as the Redis command. Each cluster (one per
process and configuration) runs one subscriber thread that drops those keys from its L1s and L0s.

Pub/sub is fire-and-forget, so the receiver never trusts silence: messages from one origin carry a
consecutive sequence, and a hole that stays open for ``GAP_GRACE_S`` (concurrent publishers of one
origin may arrive slightly out of order), or a subscription connection that drops (redis-py reconnects and
resubscribes on its own; the fresh subscribe confirmation gives it away), makes the receiver flush
every local tier (L0s and L1s) of its cluster, counted in ``flushes``. A flush costs cache hits,
never correctness. What is *not* covered: a process that cannot reach Redis at all keeps serving its
local copies until their TTL (L1 ``MW_L1_TTL_S`` at most); that bound is the documented limit.

The same thread receives ``mw:landed`` messages (a lease holder filled a key) and wakes the
waiters registered for that key, in this process's threads and event loops.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mw.tiers.l2 import RedisTier

log = logging.getLogger("mw.invalidation")

INV_CHANNEL = "mw:inv"
LANDED_CHANNEL = "mw:landed"


GAP_GRACE_S = 0.5
"""How long a hole in an origin's sequence may stay open before it counts as a lost message."""


@dataclass
class _Origin:
    next: int
    ahead: set[int] = field(default_factory=set)
    since: float | None = None


class LagStats:
    """Send-to-apply lag of received invalidations, in seconds (a bounded window of recent samples)."""

    def __init__(self, window: int = 4096) -> None:
        self.samples: deque[float] = deque(maxlen=window)

    def add(self, lag_s: float) -> None:
        self.samples.append(max(0.0, lag_s))

    def summary(self) -> dict[str, float]:
        data = sorted(self.samples)
        if not data:
            return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}

        def pct(p: float) -> float:
            return data[min(len(data) - 1, int(p * len(data)))] * 1000

        return {"count": len(data), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": data[-1] * 1000}


class Waiters:
    """Threads and coroutines waiting for a key to land, woken by the bus (or by a local fill)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[Callable[[], None]]] = {}
        self.woken = 0

    def register(self, key: str, wake: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._by_key.setdefault(key, []).append(wake)

        def unregister() -> None:
            with self._lock:
                wakes = self._by_key.get(key)
                if wakes and wake in wakes:
                    wakes.remove(wake)
                    if not wakes:
                        del self._by_key[key]

        return unregister

    def wake(self, key: str) -> None:
        with self._lock:
            wakes = list(self._by_key.get(key, ()))
        self.woken += len(wakes)
        for wake in wakes:
            wake()


class InvalidationBus:
    """Publisher and subscriber of one cluster. ``drop`` and ``flush`` act on the local tiers."""

    def __init__(
        self,
        l2: RedisTier,
        drop: Callable[[Iterable[str]], object],
        flush: Callable[[], object],
        timeout_s: float = 5.0,
    ) -> None:
        self.l2 = l2
        self.timeout_s = timeout_s
        self.origin = uuid.uuid4().hex[:16]
        self._seq = itertools.count(1)
        self._drop = drop
        self._flush = flush
        self._origins: dict[str, _Origin] = {}
        self.waiters = Waiters()
        self.lag = LagStats()
        self.received = 0
        self.flushes = 0
        self.reconnects = 0
        self.connected = False
        self._late = False
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None

    # --- publishing ------------------------------------------------------------------------------------
    def message(self, keys: Iterable[str]) -> tuple[str, bytes]:
        """The (channel, payload) to publish with a command that changes ``keys``."""
        body = {"o": self.origin, "s": next(self._seq), "k": list(keys), "t": time.time()}
        return INV_CHANNEL, json.dumps(body, separators=(",", ":")).encode()

    # --- receiving -------------------------------------------------------------------------------------
    def start(self, timeout_s: float | None = None) -> bool:
        """Start the subscriber thread; True once subscribed (False if Redis did not answer in time).

        Not answering in time is not an error: the thread keeps trying, and flushes the local tiers when it
        first subscribes after copies may have been served (messages before that could not be received).
        """
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"mw-inv-{self.origin[:6]}", daemon=True)
            self._thread.start()
        if self._ready.wait(timeout_s):
            return True
        with self._state_lock:
            if self._ready.is_set():
                return True
            self._late = True  # copies may be served before the first subscription: flush when it comes
            return False

    @property
    def subscribed(self) -> bool:
        """Subscribed right now."""
        return self.connected

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._ready.is_set():
            # Wake the subscriber's blocking read; a landed message for a key nobody waits on is a no-op.
            try:
                self.l2.client.publish(self.l2.phys(LANDED_CHANNEL), f"mw:bus-stop:{self.origin}")
            except Exception:  # Redis gone: the read times out by itself
                log.debug("wake-up publish on stop failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _subscribe(self) -> Any:
        """Subscribe and wait for both confirmations: only then can a missed message be ruled out."""
        pubsub = self.l2.client.pubsub()
        pubsub.subscribe(self.l2.phys(INV_CHANNEL), self.l2.phys(LANDED_CHANNEL))
        confirmed = 0
        deadline = time.monotonic() + self.timeout_s
        while confirmed < 2:
            if time.monotonic() > deadline or self._stop.is_set():
                raise TimeoutError("no subscribe confirmation from Redis")
            msg = pubsub.get_message(timeout=0.1)
            if msg is not None and msg.get("type") == "subscribe":
                confirmed += 1
        return pubsub

    def _run(self) -> None:
        backoff = 0.05
        inv = self.l2.phys(INV_CHANNEL).encode()
        lost = False
        while not self._stop.is_set():
            try:
                self._pubsub = self._subscribe()
                with self._state_lock:
                    gap = self._ready.is_set() or self._late
                    self._late = False
                    self._ready.set()
                if gap:
                    self._flush_all("subscription re-established; messages of the gap may be lost")
                    self.reconnects += 1
                self.connected, lost, backoff = True, False, 0.05
                while not self._stop.is_set():
                    msg = self._pubsub.get_message(timeout=0.2)
                    self._check_gaps()
                    if msg is None:
                        continue
                    if msg.get("type") == "subscribe":
                        # redis-py reconnects and resubscribes silently; what was published meanwhile is lost.
                        if msg["channel"] == inv:
                            self._flush_all("subscription dropped and re-established")
                            self.reconnects += 1
                        continue
                    if msg.get("type") != "message":
                        continue
                    if msg["channel"] == inv:
                        self._on_invalidation(msg["data"])
                    else:
                        self.waiters.wake(msg["data"].decode())  # the landed key is sent unprefixed
            except Exception as exc:  # a dropped connection or a server gone: resubscribe, flush when back
                self.connected = False
                if self._stop.is_set():
                    break
                if not lost:
                    lost = True
                    log.warning(
                        "Invalidation subscription to %s lost (%s: %s); local copies serve until their TTL, "
                        "and are flushed once it is back",
                        self.l2.describe(),
                        type(exc).__name__,
                        exc,
                    )
                else:
                    log.debug("Invalidation subscription still down: %s: %s", type(exc).__name__, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self._close_pubsub()

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # closing a broken connection may itself fail; nothing to do about it
                log.debug("closing pubsub failed", exc_info=True)
            self._pubsub = None

    def _on_invalidation(self, data: bytes) -> None:
        try:
            body = json.loads(data)
            origin, seq, keys, sent = body["o"], int(body["s"]), list(body["k"]), float(body["t"])
        except (ValueError, KeyError, TypeError):
            log.warning("Malformed invalidation message %r; flushing local tiers", data[:80])
            self._flush_all("malformed message")
            return
        if origin == self.origin:
            return
        self.received += 1
        self._drop(keys)
        self.lag.add(time.time() - sent)
        self._sequence(origin, seq)

    def _sequence(self, origin: str, seq: int) -> None:
        """Track each origin's sequence. Threads of one origin publish concurrently, so messages may
        arrive slightly out of order: a hole is a loss only if it stays open for ``GAP_GRACE_S``."""
        state = self._origins.get(origin)
        if state is None:
            self._origins[origin] = _Origin(seq + 1)
            return
        if seq == state.next:
            state.next += 1
            while state.next in state.ahead:
                state.ahead.discard(state.next)
                state.next += 1
        elif seq > state.next:
            state.ahead.add(seq)
            if state.since is None:
                state.since = time.monotonic()
        if not state.ahead:
            state.since = None

    def _check_gaps(self) -> None:
        now = time.monotonic()
        for origin, state in self._origins.items():
            if state.since is not None and now - state.since > GAP_GRACE_S:
                missing = state.next
                state.next = max(state.ahead) + 1
                state.ahead.clear()
                state.since = None
                self._flush_all(f"sequence gap from {origin}: message {missing} never arrived")

    def _flush_all(self, why: str) -> None:
        log.warning("Flushing local tiers: %s", why)
        self._flush()
        self.flushes += 1
