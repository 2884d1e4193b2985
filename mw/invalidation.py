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

A change that could not reach Redis is kept in :class:`PendingInvalidations` (the cluster's) and sent
once Redis answers again as one replay message: its keys, ``"r"`` the sequence numbers the lost messages
had spent (so receivers see no hole), or ``"f": 1`` (flush everything, covering every earlier number)
when too much was pending to list. Sequence state is bounded: origins not heard from for
``ORIGIN_IDLE_S``, or beyond ``MAX_ORIGINS``, are forgotten; a forgotten origin's next message starts
afresh (never taken for a gap), and forgetting one with an open hole flushes.

The same thread receives ``mw:landed`` messages (a lease holder filled a key) and wakes the
waiters registered for that key, in this process's threads and event loops.

A :class:`BusTransport` replaces Redis pub/sub as the carrier (the simulator's, which must stay
single-threaded and replay under a seed): then no subscriber thread runs; the messages L2 commands
carry are handed to the transport once Redis took the command, the transport hands other clusters'
messages to :meth:`InvalidationBus.deliver` (the same receive path: sequences, gaps, flushes), and
calls :meth:`InvalidationBus.check` where the thread would look for holes. Time is the transport's.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mw import keys as K
from mw.telemetry import invalidation_lag
from mw.tiers.l2 import RedisTier

log = logging.getLogger("mw.invalidation")

INV_CHANNEL = K.INV_CHANNEL
LANDED_CHANNEL = K.LANDED_CHANNEL


GAP_GRACE_S = 0.5
"""How long a hole in an origin's sequence may stay open before it counts as a lost message."""

MAX_ORIGINS = 4096
"""Origins whose sequence is tracked; the least recently heard is forgotten beyond this."""

ORIGIN_IDLE_S = 600.0
"""An origin not heard from for this long is forgotten (a process that stopped publishing, or exited)."""

MAX_AHEAD = 4096
"""Messages received past a hole before it counts as a loss without waiting for ``GAP_GRACE_S``."""

MAX_BACKOFF_S = 2.0
"""Longest wait between subscription attempts while nothing says Redis is back (``kick`` cuts it short)."""


@dataclass
class _Origin:
    next: int
    heard: float
    ahead: set[int] = field(default_factory=set)
    since: float | None = None


@dataclass
class Unreached:
    """One replay: keys to invalidate, L2 keys to delete, sequence numbers of lost messages, or a flush."""

    keys: dict[str, None] = field(default_factory=dict)
    deletes: dict[str, None] = field(default_factory=dict)
    seqs: set[int] = field(default_factory=set)
    flush: bool = False


MAX_PENDING_KEYS = 1024
"""Keys (and lost sequence numbers) a replay lists; beyond this it asks other processes to flush instead."""

MAX_PENDING_DELETES = 65536
"""L2 keys kept for a replayed delete; beyond this a delete is not replayed in L2 (its copy lives until its TTL)."""


class PendingInvalidations:
    """Changes of one cluster that could not reach L2, kept until it answers again (bounded).

    A write is never kept for replay (a late replay could overwrite a newer write): only its keys, which
    other processes must drop, and a delete of the L2 copy it could not replace. A delete is kept whole
    (its L2 keys, leases included), since deleting again
    is always safe. A later change that does reach L2 settles the keys it covered.
    """

    def __init__(self, max_keys: int = MAX_PENDING_KEYS, max_deletes: int = MAX_PENDING_DELETES) -> None:
        self.max_keys = max_keys
        self.max_deletes = max_deletes
        self._lock = threading.Lock()
        self._batch = Unreached()
        self._sending = False
        self._on_its_way: Unreached | None = None
        self._settled: set[str] = set()
        """Keys of the batch on its way that L2 has taken a newer value for since (its delete is moot)."""
        self.lost_deletes = 0
        """Delete keys not kept because ``max_deletes`` were already pending."""

    def __bool__(self) -> bool:
        """Anything pending, or a replay of it still on its way."""
        b = self._batch
        return bool(self._sending or b.keys or b.deletes or b.seqs or b.flush)

    def deletes(self, key: str) -> bool:
        """Whether a delete of ``key`` in L2 is pending (or on its way): what L2 holds under it is not to be served."""
        on_its_way = self._on_its_way
        if key in self._batch.deletes:
            return True
        return on_its_way is not None and key in on_its_way.deletes and key not in self._settled

    def add(self, keys: Iterable[str], seq: int | None = None, deletes: Iterable[str] = ()) -> None:
        with self._lock:
            self._merge(Unreached(dict.fromkeys(keys), dict.fromkeys(deletes), set() if seq is None else {seq}))

    def _merge(self, other: Unreached) -> None:
        b = self._batch
        b.flush = b.flush or other.flush
        if not b.flush:
            b.keys.update(other.keys)
            b.seqs |= other.seqs
            if len(b.keys) > self.max_keys or len(b.seqs) > self.max_keys:
                b.flush = True
        if b.flush:  # a flush covers every key and every earlier sequence number
            b.keys.clear()
            b.seqs.clear()
        room = self.max_deletes - len(b.deletes)
        fresh = [k for k in other.deletes if k not in b.deletes]
        if len(fresh) > room:
            self.lost_deletes += len(fresh) - max(room, 0)
            log.warning(
                "%d pending deletes already; %d more are not replayed in L2 (their copies live until their TTL)",
                len(b.deletes),
                len(fresh) - max(room, 0),
            )
            fresh = fresh[: max(room, 0)]
        b.deletes.update(dict.fromkeys(fresh))

    def settle(self, keys: Iterable[str]) -> None:
        """``keys`` were just written or deleted in L2 (and invalidated): nothing pending for them."""
        with self._lock:
            b = self._batch
            for key in keys:
                b.keys.pop(key, None)
                b.deletes.pop(key, None)
            if self._on_its_way is not None:
                self._settled.update(keys)

    def take(self) -> Unreached | None:
        """Everything pending, to send; ``None`` if nothing is, or another replay is on its way.

        The caller ends with :meth:`sent` or :meth:`restore`.
        """
        with self._lock:
            if self._sending or not self:
                return None
            batch, self._batch = self._batch, Unreached()
            self._sending = True
            self._on_its_way = batch
            return batch

    def sent(self) -> None:
        with self._lock:
            self._sending = False
            self._on_its_way = None
            self._settled.clear()

    def restore(self, batch: Unreached, seq: int | None = None) -> None:
        """Put back a batch whose replay failed (``seq``: the number its own message spent); what was settled while
        it was on its way stays settled (a fresh fill's copy must not be deleted, nor hidden, by a later replay)."""
        with self._lock:
            for key in self._settled:
                batch.keys.pop(key, None)
                batch.deletes.pop(key, None)
            self._sending = False
            self._on_its_way = None
            self._settled.clear()
            if seq is not None:
                batch.seqs.add(seq)
            self._merge(batch)


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


class BusTransport(Protocol):
    """What carries a cluster's bus messages instead of Redis pub/sub (see the module doc)."""

    def now(self) -> float:
        """The transport's time in seconds: message stamps, lag and the gap grace are measured on it."""
        ...

    def attach(self, bus: InvalidationBus) -> None:
        """``bus`` receives from now on (:meth:`InvalidationBus.deliver`) what other buses send."""
        ...

    def detach(self, bus: InvalidationBus) -> None:
        """``bus`` receives no more."""
        ...

    def send(self, bus: InvalidationBus, channel: str, payload: bytes) -> None:
        """``bus`` published ``payload`` on ``channel`` (logical name); Redis took the command carrying it."""
        ...


class InvalidationBus:
    """Publisher and subscriber of one cluster. ``drop`` and ``flush`` act on the local tiers.

    ``transport``: another carrier than Redis pub/sub (no subscriber thread; see the module doc).
    """

    def __init__(
        self,
        l2: RedisTier,
        drop: Callable[[Iterable[str]], object],
        flush: Callable[[], object],
        timeout_s: float = 5.0,
        *,
        on_tick: Callable[[], object] | None = None,
        max_origins: int = MAX_ORIGINS,
        origin_idle_s: float = ORIGIN_IDLE_S,
        transport: BusTransport | None = None,
    ) -> None:
        self.l2 = l2
        self.transport = transport
        self._now: Callable[[], float] = time.monotonic if transport is None else transport.now
        """Gap grace and idle origins are measured on this."""
        self._stamp: Callable[[], float] = time.time if transport is None else transport.now
        """Messages are stamped, and their lag measured, on this (another process compares the stamp)."""
        self.timeout_s = timeout_s
        self.origin = uuid.uuid4().hex[:16]
        self._seq = itertools.count(1)
        self._drop = drop
        self._flush = flush
        self._on_tick = on_tick
        self.max_origins = max_origins
        self.origin_idle_s = origin_idle_s
        self._origins: OrderedDict[str, _Origin] = OrderedDict()
        """Least recently heard first, so pruning looks at the front only."""
        self._holes: dict[str, _Origin] = {}
        """The origins with a hole open: the only ones the gap check has to look at."""
        self.waiters = Waiters()
        self.lag = LagStats()
        self.received = 0
        self.flushes = 0
        self.reconnects = 0
        self.connected = False
        self._late = False
        self._attempt = 0
        """Failed subscribe attempts since the last success (a cluster subscriber moves to the next primary)."""
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None

    # --- publishing ------------------------------------------------------------------------------------
    def message(self, keys: Iterable[str]) -> tuple[str, bytes]:
        """The (channel, payload) to publish with a command that changes ``keys``."""
        body = {"o": self.origin, "s": next(self._seq), "k": list(keys), "t": self._stamp()}
        return INV_CHANNEL, json.dumps(body, separators=(",", ":")).encode()

    def replay_message(self, batch: Unreached) -> tuple[str, bytes]:
        """The message that stands for the lost ones of ``batch``: their keys and numbers, or a flush."""
        body: dict[str, Any] = {"o": self.origin, "s": next(self._seq), "k": list(batch.keys), "t": self._stamp()}
        if batch.flush:
            body["f"] = 1
        elif batch.seqs:
            body["r"] = sorted(batch.seqs)
        return INV_CHANNEL, json.dumps(body, separators=(",", ":")).encode()

    @staticmethod
    def seq_of(payload: bytes) -> int:
        """The sequence number a message from :meth:`message` spent."""
        return int(json.loads(payload)["s"])

    # --- receiving -------------------------------------------------------------------------------------
    def start(self, timeout_s: float | None = None) -> bool:
        """Start the subscriber thread; True once subscribed (False if Redis did not answer in time).

        Not answering in time is not an error: the thread keeps trying, and flushes the local tiers when it
        first subscribes after copies may have been served (messages before that could not be received).
        """
        if self.transport is not None:
            if not self._ready.is_set():
                self.transport.attach(self)
                self._ready.set()
                self.connected = True
            return True
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

    def kick(self) -> None:
        """Commands work again: a subscriber waiting to retry retries now, not after its backoff."""
        self._wake.set()

    def stop(self) -> None:
        if self.transport is not None:
            if self._ready.is_set():
                self.transport.detach(self)
            self.connected = False
            self._stop.set()
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._ready.is_set():
            # Wake the subscriber's blocking read; a landed message for a key nobody waits on is a no-op.
            try:
                self.l2.client.publish(self.l2.channel(LANDED_CHANNEL), K.INTERNAL_PREFIX + "bus-stop:" + self.origin)
            except Exception:  # Redis gone: the read times out by itself
                log.debug("wake-up publish on stop failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _subscribe(self) -> Any:
        """Subscribe and wait for both confirmations: only then can a missed message be ruled out."""
        pubsub = self.l2.subscriber(self._attempt).pubsub()
        pubsub.subscribe(self.l2.channel(INV_CHANNEL), self.l2.channel(LANDED_CHANNEL))
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
        inv = self.l2.channel(INV_CHANNEL).encode()
        lost = False
        while not self._stop.is_set():
            self._wake.clear()  # a kick during this attempt makes a failure retry at once
            try:
                self._pubsub = self._subscribe()
                with self._state_lock:
                    gap = self._ready.is_set() or self._late
                    self._late = False
                    self._ready.set()
                if gap:
                    self._flush_all("subscription re-established; messages of the gap may be lost")
                    self.reconnects += 1
                self.connected, lost, backoff, self._attempt = True, False, 0.05, 0
                self._tick()
                while not self._stop.is_set():
                    msg = self._pubsub.get_message(timeout=0.2)
                    self._check_gaps()
                    self._tick()
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
                self._attempt += 1
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
                self._wake.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                self._close_pubsub()

    # --- a transport's receive path ---------------------------------------------------------------------
    def deliver(self, channel: str, payload: bytes) -> None:
        """A message a transport carried to this bus (``channel`` logical), received as the subscriber receives one."""
        if self._stop.is_set():
            return
        if channel == INV_CHANNEL:
            self._on_invalidation(payload)
        elif channel == LANDED_CHANNEL:
            self.waiters.wake(payload.decode())

    def check(self) -> None:
        """Count holes open longer than ``GAP_GRACE_S`` as losses (a flush each) and forget idle origins: what the
        subscriber thread does between messages, for a transport to call as often."""
        if not self._stop.is_set():
            self._check_gaps()

    def reconnected(self) -> None:
        """The transport's connection was lost and is back: what it carried meanwhile may be lost, so flush, as the
        subscriber does when it subscribes again."""
        if not self._stop.is_set():
            self._flush_all("transport reconnected; messages of the gap may be lost")
            self.reconnects += 1

    def _tick(self) -> None:
        """Let the cluster retry what could not reach L2 (it rate-limits itself)."""
        if self._on_tick is not None:
            try:
                self._on_tick()
            except Exception:  # the subscriber must outlive any failure of the hook
                log.exception("invalidation bus tick failed")

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
            covers = [int(s) for s in body.get("r", ())]
            flush = bool(body.get("f"))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("Malformed invalidation message %r; flushing local tiers", data[:80])
            self._flush_all("malformed message")
            return
        if origin == self.origin:
            return
        self.received += 1
        self._drop(keys)
        if flush:
            self._flush_all(f"{origin} could not reach L2 with more changes than it could list")
        lag = max(0.0, self._stamp() - sent)
        self.lag.add(lag)
        invalidation_lag.observe(lag)
        self._sequence(origin, seq, covers, flush=flush)

    def _sequence(self, origin: str, seq: int, covers: Iterable[int] = (), *, flush: bool = False) -> None:
        """Track each origin's sequence. Threads of one origin publish concurrently, so messages may
        arrive slightly out of order: a hole is a loss only if it stays open for ``GAP_GRACE_S``.

        ``covers``: numbers of lost messages this one stands for; ``flush``: it stands for every earlier one.
        """
        now = self._now()
        state = self._origins.get(origin)
        if state is None:  # new, or forgotten: nothing to compare with, so never a gap
            self._origins[origin] = _Origin(seq + 1, now)
            self._prune(now)
            return
        self._origins.move_to_end(origin)
        state.heard = now
        if flush and seq >= state.next:
            state.next = seq
            state.ahead = {s for s in state.ahead if s > seq}
        for s in (*covers, seq):
            self._advance(state, s, now)
        if not state.ahead:
            state.since = None
            self._holes.pop(origin, None)
        else:
            self._holes[origin] = state
            if len(state.ahead) > MAX_AHEAD:
                state.since = now - GAP_GRACE_S - 1  # no point waiting: report it at the next check

    @staticmethod
    def _advance(state: _Origin, seq: int, now: float) -> None:
        if seq == state.next:
            state.next += 1
            while state.next in state.ahead:
                state.ahead.discard(state.next)
                state.next += 1
        elif seq > state.next:
            state.ahead.add(seq)
            if state.since is None:
                state.since = now

    def _prune(self, now: float) -> None:
        """Forget origins beyond ``max_origins`` or idle for ``origin_idle_s``, least recently heard first."""
        origins = self._origins
        while origins:
            origin, state = next(iter(origins.items()))
            if len(origins) <= self.max_origins and now - state.heard <= self.origin_idle_s:
                return
            del origins[origin]
            if self._holes.pop(origin, None) is not None:  # its hole can no longer close: it may be a loss
                self._flush_all(f"forgot {origin} with message {state.next} missing")

    def _check_gaps(self) -> None:
        now = self._now()
        for origin, state in list(self._holes.items()):
            if state.since is not None and now - state.since > GAP_GRACE_S:
                missing = state.next
                state.next = max(state.ahead) + 1
                state.ahead.clear()
                state.since = None
                del self._holes[origin]
                self._flush_all(f"sequence gap from {origin}: message {missing} never arrived")
        self._prune(now)

    @property
    def tracked_origins(self) -> int:
        """Origins whose sequence state is held (bounded by ``max_origins``)."""
        return len(self._origins)

    def _flush_all(self, why: str) -> None:
        log.warning("Flushing local tiers: %s", why)
        self._flush()
        self.flushes += 1
