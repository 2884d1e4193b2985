"""A deterministic scheduler: one seed, one small scenario, one interleaving, on a virtual clock.

Per seed (everything drawn from ``random.Random(seed)``): 2-4 real :class:`mw.MwManager` agents in two
clusters (two "processes") on one or two nodes each, 1-3 keys, a store (the Mlt model) where each key
starts present or absent, and 4-10 operations at random times: reads (sync, async or split-phase),
writes (``set_global_item_typed``), invalidations (the store changes, then ``del_global_item_typed``) and
deletes. Loaders take virtual time (up to 7 s, beyond the lease TTL), some fail; async callers may be
cancelled or close their loop; leases expire; faults are injected under the seed at protocol steps,
L2 commands (before and after they ran), the Mlt call and the bus.

How the runtime is driven:

* the L2 of each cluster is the model (:mod:`tests.explore.model`) installed as ``RedisTier.client``,
  so writes, deletes, leases and the split-phase API run the runtime's own code over it;
* split-phase callers call ``begin_load``/``poll_load``/``finish_load`` as the simulator does (and
  extend their lease through ``plan.token`` while their load runs);
* sync and async callers run the protocol's own generator (``mw.protocol.read_through``) with this
  module as their driver: each effect is one scheduling step, ``Load``/``Wait``/``FlightWait`` take
  virtual time, a holder's lease is extended every third of its TTL while it loads (as
  ``mw.drive.Extender`` does), and the async rules of ``mw.drive`` hold: a holder's load goes on when its
  caller is cancelled (it runs in a task of its own), a caller whose loop closes stops where it is;
* the bus is modelled: a change that reached L2 drops the keys its writer dropped locally from the other
  cluster after a delay, or, when the fault plan loses the message, flushes that cluster after the gap
  grace; failed deletes are replayed (``Cluster.replay``) on a tick of virtual time.

Nothing else runs: no bus thread, no replay thread, no extender thread, so a seed replays exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import itertools
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions as rx

import mw
from mw import MwConfig, MwManager
from mw import faults as F
from mw import keys as K
from mw import protocol as P
from mw.codec import peek_expire_at
from mw.errors import LoadTimeout, MltUnavailable, TierUnavailable
from mw.faults import Act, Drop
from mw.flight import ABANDONED
from mw.tiers import MISS

from .invariants import BUS_DELAY_S, GAP_GRACE_S, CallRecord, Change, Fault, History, LoaderError, LoadRecord, Violation
from .model import Logged, MltModel, ModelRedis, VirtualTime

KIND, SCOPE = "doc", "s"
NAMESPACE = "x"
LOAD_TIMEOUT_S = 40.0
MLT_TIMEOUT_S = 5.0
NEGATIVE_TTL_S = 3.0
REPLAY_TICK_S = 0.25
HORIZON_S = 120.0
"""Virtual time after the last operation's start at which a schedule is stopped (calls still running hang)."""
MAX_EVENTS = 200_000

LOADER_TIMES = (0.0, 0.005, 0.05, 0.3, 1.0, 2.5, 7.0)
LOADER_WEIGHTS = (3, 3, 3, 3, 2, 2, 1)


# --- the scenario ------------------------------------------------------------------------------------
@dataclass
class Op:
    at: float
    kind: str
    """``read``, ``write``, ``invalidate`` (the store changes, the cache is deleted) or ``delete``."""
    manager: int
    item: str
    mode: str = "sync"
    """For a read: ``sync``, ``async`` or ``split``; for a change: ``sync`` or ``async``."""
    loader_s: float = 0.0
    loader_fails: bool = False
    ttl_s: float = 3.0
    cancel_after: float | None = None
    close_after: float | None = None

    def __str__(self) -> str:
        extra = ""
        if self.kind == "read":
            extra = f" loader={self.loader_s}s{' fails' if self.loader_fails else ''} ttl={self.ttl_s}"
            if self.cancel_after is not None:
                extra += f" cancel+{self.cancel_after}"
            if self.close_after is not None:
                extra += f" close-loop+{self.close_after}"
        return f"t={self.at:.3f} m{self.manager} {self.kind} {self.mode} {self.item}{extra}"


@dataclass
class Scenario:
    seed: int
    lease_ttl_s: float
    managers: list[tuple[int, str]]
    """``(cluster, node)`` of each manager."""
    items: list[str]
    initial: dict[str, bool]
    """Whether each item starts present in the store."""
    ops: list[Op]
    fault_rate: float

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}: lease {self.lease_ttl_s}s, fault rate {self.fault_rate}, "
            f"managers {[f'm{i}@c{c}/{n}' for i, (c, n) in enumerate(self.managers)]}, "
            f"store {self.initial}"
        ]
        lines += [f"  {op}" for op in self.ops]
        return "\n".join(lines)


def scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    n = rng.randint(2, 4)
    managers = [(i % 2, f"n{rng.randint(0, 1)}") for i in range(n)]
    items = [f"k{i}" for i in range(rng.randint(1, 3))]
    initial = {item: rng.random() < 0.7 for item in items}
    ops = []
    for _ in range(rng.randint(4, 10)):
        kind = rng.choices(("read", "write", "invalidate", "delete"), (10, 2, 2, 1))[0]
        op = Op(round(rng.uniform(0, 8), 3), kind, rng.randrange(n), rng.choice(items))
        if kind == "read":
            op.mode = rng.choice(("sync", "async", "split"))
            op.loader_s = rng.choices(LOADER_TIMES, LOADER_WEIGHTS)[0]
            op.loader_fails = rng.random() < 0.1
            op.ttl_s = rng.choice((1.0, 3.0, 10.0))
            if op.mode == "async" and rng.random() < 0.25:
                after = round(rng.uniform(0, 3), 3)
                if rng.random() < 0.5:
                    op.cancel_after = after
                else:
                    op.close_after = after
        else:
            op.mode = rng.choice(("sync", "async"))
            op.ttl_s = rng.choice((1.0, 3.0, 10.0))
        ops.append(op)
    ops.sort(key=lambda o: o.at)
    lease = rng.choice((0.5, 1.0, 2.0))
    rate = rng.choice((0.0, 0.0, 0.02, 0.05, 0.15))
    return Scenario(seed, lease, managers, items, initial, ops, rate)


# --- the run -----------------------------------------------------------------------------------------
@dataclass
class Call:
    """One read in progress."""

    rec: CallRecord
    op: Op
    manager: MwManager
    key: str
    steps: Generator[Any, Any, Any] | None = None
    read: P.Read | None = None
    loop: asyncio.AbstractEventLoop | None = None
    plan: Any = None
    token: int = 0
    """Bumped whenever the call is resumed out of turn: a scheduled resumption with an older one is stale."""
    step: str = "start"
    waiting: bool = False
    detached: bool = False
    """An async caller that was cancelled while its load ran: the steps go on without it."""
    frozen: bool = False
    loading: bool = False
    lease_epoch: int = 0
    """The key's epoch when this caller took the lease: its load belongs to that epoch (a change that took
    the lease away meanwhile started a new one, in which another caller may load)."""
    finished: bool = False
    cancelled: bool = False
    """The generator (or the plan) has run to its end."""


@dataclass
class Result:
    seed: int
    scenario: Scenario
    history: History
    violations: list[Violation]
    events: int
    schedule: list[str] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    """Every L2 command of the schedule, for the cross-check against a real Redis."""

    @property
    def faults(self) -> int:
        return len(self.history.faults)

    def report(self) -> str:
        lines = [
            f"seed {self.seed} failed: {len(self.violations)} violation(s)",
            *[f"  {v}" for v in self.violations],
            "scenario:",
            self.scenario.describe(),
            f"reproduce: tools/explore --seed {self.seed} --verbose",
        ]
        return "\n".join(lines)


class Explorer:
    """Runs one scenario (see the module docstring)."""

    def __init__(self, sc: Scenario, *, verbose: bool = False) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed * 7919 + 1)
        self.time = VirtualTime()
        self.history = History(self.time.start)
        self.model = ModelRedis(self.time, self._on_l2)
        self.mlt = MltModel(self.time, MLT_TIMEOUT_S)
        self.queue: list[tuple[float, int, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.order = itertools.count(1)
        self.events = 0
        self.current: Call | None = None
        self.context: tuple[str, Any] = ("idle", None)
        self.calls: list[Call] = []
        self.versions: dict[str, int] = {}
        self.dropped: list[str] = []
        self.landed: list[str] = []
        self.verbose = verbose
        self.schedule: list[str] = []
        self.clusters: list[Any] = []
        self.managers: list[MwManager] = []
        self._build()

    # --- world -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        sc = self.sc
        base = MwConfig.from_env(
            {"MW_TASK_TTL_NEGATIVE_S": str(NEGATIVE_TTL_S)},
            namespace=NAMESPACE,
            pubsub=False,
            tier_retry_s=0.0,
            lease_ttl_s=sc.lease_ttl_s,
            load_timeout_s=LOAD_TIMEOUT_S,
            mlt_timeout_s=MLT_TIMEOUT_S,
            rng_seed=sc.seed,
        )
        clocks = [self.time.clock(), self.time.clock()]
        for i, (cluster, node) in enumerate(sc.managers):
            m = MwManager(f"m{i}", base, node=node, clock=clocks[cluster])
            self.managers.append(m)
        for idx in range(2):
            found = [m.cluster for m, (c, _) in zip(self.managers, sc.managers, strict=True) if c == idx]
            self.clusters.append(found[0] if found else None)
        for idx, cluster in enumerate(self.clusters):
            if cluster is None:
                continue
            cluster.l2.client = self.model.client(f"c{idx}")
            cluster.replay_soon = _no_replay_thread  # replayed on the scheduler's tick instead
            original = cluster.drop_local

            def recording(keys: Any, *, keep: Any = None, _original: Any = original, _idx: int = idx) -> int:
                keys = list(keys)
                if self.context[0] == "change" and self.context[1][0] == _idx:
                    self.dropped.extend(keys)
                return int(_original(keys, keep=keep))

            cluster.drop_local = recording
        for item in sc.items:
            key = K.global_typed_key(KIND, SCOPE, item)
            self.versions[key] = 0
            self.mlt.put(key, 0, {"v": 0} if sc.initial[item] else None)

    def close(self) -> None:
        for call in self.calls:
            if call.steps is not None:
                with contextlib.suppress(BaseException):
                    call.steps.close()
            call.plan = None
            if call.loop is not None and not call.loop.is_closed():
                call.loop.close()
        for m in self.managers:
            m.close()
        mw.close_all()

    # --- the event queue -------------------------------------------------------------------------------
    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (when, self.rng.random(), next(self.seq), fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(self.time.now + delay, fn)

    def latency(self) -> float:
        return self.rng.choice((0.0, 0.0, 0.0005, 0.002))

    def log(self, text: str) -> None:
        if self.verbose:
            self.schedule.append(f"{self.time.elapsed:9.4f} {text}")

    def run(self) -> Result:
        start = self.time.now
        for op in self.sc.ops:
            self.at(start + op.at, lambda op=op: self._start(op))
        self.at(start + REPLAY_TICK_S, self._replay_tick)
        stop = start + (self.sc.ops[-1].at if self.sc.ops else 0) + HORIZON_S
        remove = F.install(self._inject)
        collecting = gc.isenabled()
        gc.disable()  # a collection closes unreachable generators at its own moment: not under the seed
        try:
            while self.queue and self.events < MAX_EVENTS:
                when, _, _, fn = heapq.heappop(self.queue)
                if when > stop:
                    break
                if when > self.time.now:
                    self.time.now = when
                    self.model.expire_due()
                    self.history.tick(when)
                self.events += 1
                fn()
                if self._quiet():
                    break
        finally:
            remove()
            if collecting:
                gc.enable()
        for call in self.calls:
            self.history.record_trace(call.rec)
        violations = self.history.check(self.mlt.absent_versions)
        result = Result(self.sc.seed, self.sc, self.history, violations, self.events, self.schedule, self.model.log)
        self.close()
        return result

    def _quiet(self) -> bool:
        """Every read began and ended, and no detached load is still running."""
        if len(self.calls) < self._reads() or not all(c.rec.ended for c in self.calls):
            return False
        return not any(c.detached and not c.frozen and not c.finished for c in self.calls)

    def _reads(self) -> int:
        return sum(op.kind == "read" for op in self.sc.ops)

    def _replay_tick(self) -> None:
        for idx, cluster in enumerate(self.clusters):
            if cluster is not None and cluster.pending:
                self.context = ("replay", idx)
                mark = len(self.model.log)
                try:
                    cluster.replay()
                finally:
                    self.context = ("idle", None)
                for ch in self.history.changes:
                    if ch.landed_at is None and ch.cluster == idx and self._reached(mark, idx, ch.key):
                        ch.landed_at, ch.landed_seq = self.time.now, next(self.order)
                        self.history.reset(ch.key)
                self._deliver(idx)
        if not self._quiet() or self._pending():
            self.after(REPLAY_TICK_S, self._replay_tick)

    def _pending(self) -> bool:
        return any(c is not None and c.pending for c in self.clusters)

    # --- L2 events: epochs, landed changes, the bus -----------------------------------------------------------
    def _logical(self, phys: str) -> str:
        return phys[len(NAMESPACE) + 1 :] if phys.startswith(NAMESPACE + ":") else phys

    def _on_l2(self, who: str, op: str, phys: str, expire_at: float | None, data: bytes | None) -> None:
        if op == "publish":
            channel = self._logical(phys)
            if channel == "mw:landed" and data is not None:
                self._wake(data.decode())
            return
        key = self._logical(phys)
        kind = "value"
        if key.startswith("mw:lease:"):
            return
        if key.startswith("mw:neg:"):
            key, kind = key[len("mw:neg:") :], "neg"
        if key not in self.versions:
            return
        changing = self.context[0] in ("change", "replay")
        if op == "set":
            if changing:
                self.landed.append(key)
            if data is not None:
                until = expire_at if expire_at is not None else float("inf")
                with contextlib.suppress(Exception):
                    inner = peek_expire_at(data)
                    if inner is not None:
                        until = min(until, inner)
                self.history.filled(key, kind, until)
        elif op == "del":
            if changing:
                self.landed.append(key)
            self.history.gone(key, kind)
        elif op == "expire":
            self.history.gone(key, kind)

    def _reached(self, mark: int, cluster: int, key: str) -> bool:
        """Whether a write or delete of ``key`` from ``cluster`` ran in L2 since log entry ``mark``."""
        phys = f"{NAMESPACE}:{key}"
        for entry in self.model.log[mark:]:
            if entry.client == f"c{cluster}" and entry.command in ("set", "delete") and phys in entry.args:
                return True
        return False

    def _deliver(self, origin: int) -> None:
        """The bus: what the change dropped in its own cluster is dropped in the other one."""
        keys = list(dict.fromkeys([*self.dropped, *self.landed]))
        self.dropped, self.landed = [], []
        if not keys:
            return
        for idx, cluster in enumerate(self.clusters):
            if idx == origin or cluster is None:
                continue
            if self._chance("bus.message", None, "lose"):
                self.after(GAP_GRACE_S, lambda c=cluster: c.flush_local())
            else:
                self.after(self.rng.uniform(0, BUS_DELAY_S), lambda c=cluster, k=keys: c.drop_local(k))

    # --- faults ------------------------------------------------------------------------------------------------
    def _chance(self, point: str, key: str | None, action: str, call: Call | None = None) -> bool:
        if not self.sc.fault_rate or self.rng.random() >= self.sc.fault_rate:
            return False
        self._fault(point, key, action, call)
        return True

    def _fault(self, point: str, key: str | None, action: str, call: Call | None = None) -> None:
        call = self.current if call is None else call
        step = call.step if call is not None else self.context[0]
        base = _item_key(key)
        self.history.fault(Fault(self.time.now, call.rec.id if call else None, point, base, action, step))
        self.log(f"fault {action} at {point} {key} (step {step})")

    def _inject(self, point: str, key: str | None) -> F.Action | None:
        """The fault seam's injector: L2 points fail or drop; protocol points name the caller's step."""
        call = self.current
        if point.startswith("protocol."):
            if call is not None:
                call.step = point.split(".", 1)[1]
                call.rec.trace.append(call.step)
                if call.step == "acquire":  # the split-phase plan takes the lease next, atomically
                    call.lease_epoch = self.history.epoch[call.key]
            return None
        if not self.sc.fault_rate or self.rng.random() >= self.sc.fault_rate:
            return None
        choice = self.rng.choice(("refused", "timeout", "drop"))
        self._fault(point, key, choice)
        if choice == "drop":
            return Drop()
        error = rx.ConnectionError if choice == "refused" else rx.TimeoutError
        return Act(_raiser(error, f"injected: {choice} at {point}"))

    def _delay(self, point: str, key: str | None, call: Call) -> float:
        if not self.sc.fault_rate or self.rng.random() >= self.sc.fault_rate:
            return 0.0
        delay = self.rng.choice((0.01, 0.1, 0.6, 2.5))
        self._fault(point, key, f"delay {delay}s", call)
        return delay

    # --- operations -----------------------------------------------------------------------------------------------
    def _start(self, op: Op) -> None:
        m = self.managers[op.manager]
        key = K.global_typed_key(KIND, SCOPE, op.item)
        cluster = self.sc.managers[op.manager][0]
        self.log(f"start {op}")
        if op.kind != "read":
            self._change(op, m, key, cluster)
            return
        rec = CallRecord(len(self.calls), key, cluster, op.mode, self.time.now, next(self.order))
        self.history.calls.append(rec)
        call = Call(rec, op, m, key)
        self.calls.append(call)
        if op.mode == "split":
            self._split_begin(call)
            return
        if op.mode == "async":
            call.loop = asyncio.new_event_loop()
            if op.cancel_after is not None:
                self.after(op.cancel_after, lambda: self._cancel(call))
            if op.close_after is not None:
                self.after(op.close_after, lambda: self._close_loop(call))
        value = m.l0.get(key, MISS)
        if value is not MISS:
            self._end(call, "value", value)
            return
        call.read = P.Read(
            key,
            op.ttl_s,
            None,
            self.time.now + LOAD_TIMEOUT_S,
            self.time.clock(),
            call.loop,
        )
        call.steps = P.read_through(m.tiers, call.read)
        self._resume(call, None, None)

    def _change(self, op: Op, m: MwManager, key: str, cluster: int) -> None:
        version = self.versions[key] = self.versions[key] + 1
        present = op.kind != "delete"
        self.mlt.put(key, version, {"v": version} if present else None)
        change = Change(key, version, present, cluster, self.time.now)
        self.history.changes.append(change)
        self.context = ("change", (cluster, change))
        self.dropped, self.landed = [], []
        mark = len(self.model.log)
        try:
            if op.kind == "write":
                m.set_global_item_typed(KIND, SCOPE, op.item, {"v": version}, ttl_s=op.ttl_s)
            elif op.mode == "async":
                _run_now(m.del_global_item_typed_async(KIND, SCOPE, op.item))
            else:
                m.del_global_item_typed(KIND, SCOPE, op.item)
        finally:
            self.context = ("idle", None)
        if self._reached(mark, cluster, key):  # else a failed delete lands with its replay (see _replay_tick)
            change.landed_at, change.landed_seq = self.time.now, next(self.order)
            self.history.reset(key)
        self.log(f"change {op.kind} {key} v{version} {'landed' if change.landed_at else 'did not reach L2'}")
        self._deliver(cluster)

    # --- sync and async: the protocol's generator, driven here -----------------------------------------------
    def _schedule(self, call: Call, delay: float, send: Any = None, throw: BaseException | None = None) -> None:
        token = call.token

        def go() -> None:
            if call.token == token and not call.frozen:
                self._resume(call, send, throw)

        self.after(delay, go)

    def _resume(self, call: Call, send: Any, throw: BaseException | None) -> None:
        steps = call.steps
        assert steps is not None
        call.waiting = False
        self.current = call
        try:
            effect = steps.send(send) if throw is None else steps.throw(throw)
        except StopIteration as stop:
            call.finished = True
            self._end(call, "value", stop.value.value)
            return
        except BaseException as exc:
            call.finished = True
            self._end(call, "error", exc)
            return
        finally:
            self.current = None
        self._effect(call, effect)

    def _effect(self, call: Call, effect: Any) -> None:
        if not isinstance(effect, (P.L1Get, P.L2Read, P.Acquire, P.Fill, P.Release)):
            self.log(f"call {call.rec.id} {type(effect).__name__} {_short(effect)}")
        if isinstance(effect, P.Step):
            call.step = effect.name
            call.rec.trace.append(effect.name)
            delay = self._delay(f"protocol.{effect.name}", effect.key, call)
            if self.sc.fault_rate and self.rng.random() < self.sc.fault_rate / 4:
                self._fault(f"protocol.{effect.name}", effect.key, "fail", call)
                self._schedule(call, delay, throw=TierUnavailable(f"injected at protocol.{effect.name}"))
                return
            self._schedule(call, delay + self.latency())
            return
        if isinstance(effect, P.Load):
            self._load(call, effect.key, effect.lease_key, effect.token)
            return
        if isinstance(effect, P.Watch):
            self._schedule(call, 0.0)
            return
        if isinstance(effect, P.Wait):
            call.waiting = True
            self._schedule(call, max(0.0, effect.until - self.time.now))
            return
        if isinstance(effect, P.FlightWait):
            self._follow(call, effect.entry, effect.until)
            return
        name = type(effect).__name__
        before = self._delay(f"effect.{name}", call.key, call)
        self._schedule_io(call, effect, before)

    def _schedule_io(self, call: Call, effect: Any, before: float) -> None:
        token = call.token

        def go() -> None:
            if call.token != token or call.frozen:
                return
            self.current = call
            try:
                result, error = self._io(call, effect), None
            except BaseException as exc:
                result, error = None, exc
            finally:
                self.current = None
            self.log(
                f"call {call.rec.id} {type(effect).__name__} -> {'raised ' + repr(error) if error else _short(result)}"
            )
            after = self._delay(f"effect.{type(effect).__name__}.reply", call.key, call) + self.latency()
            self._schedule(call, after, result, error)

        self.after(before, go)

    def _io(self, call: Call, effect: Any) -> Any:
        m = call.manager
        cluster = m.cluster
        if isinstance(effect, P.L1Get):
            return m.node.l1.get(effect.key)
        if isinstance(effect, P.L2Read):
            keys = effect.keys
            return [cluster.l2.get(keys[0])] if len(keys) == 1 else cluster.l2.mget(keys)
        if isinstance(effect, P.Acquire):
            call.lease_epoch = self.history.epoch[call.key]
            return cluster.leases.acquire(effect.lease_key, effect.ttl_ms)
        if isinstance(effect, P.Fill):
            return cluster.leases.fill(*effect)
        if isinstance(effect, P.Release):
            return cluster.leases.release(effect.lease_key, effect.token)
        raise TypeError(f"not a protocol effect: {effect!r}")

    def _follow(self, call: Call, entry: Any, until: float) -> None:
        """``FlightWait``, as ``mw.drive`` follows a flight: its outcome, ABANDONED, or a poll."""
        token = call.token
        flight = call.manager.cluster.flight

        def look() -> None:
            if call.token != token or call.frozen:
                return
            fut = entry.future
            if fut.done():
                exc = fut.exception()
                self._schedule(call, self.latency(), None if exc else fut.result(), exc)
                return
            if entry.leader_gone():
                flight.abandon(entry)
                self._schedule(call, self.latency(), ABANDONED)
                return
            if self.time.now >= until:
                call.manager.telemetry.load_timeouts += 1
                self._schedule(call, 0.0, throw=LoadTimeout(call.key, LOAD_TIMEOUT_S))
                return
            self.after(min(P.POLL_S, max(0.0, until - self.time.now)), look)

        call.waiting = True
        look()

    def _load(self, call: Call, key: str, lkey: str | None, token: bytes | None) -> None:
        """The loader, on virtual time: it reads the store when it starts; a holder's lease is extended."""
        call.loading = True
        epoch = call.lease_epoch if token is not None else self.history.epoch[key]
        rec = LoadRecord(key, epoch, call.rec.id, self.time.now)
        self.history.loads.append(rec)
        version, value = self.mlt.snapshot(key)
        duration, error = self._loader_time(call, key)
        alive = [True]
        if token is not None and lkey is not None:
            self._extend(call, lkey, token, alive)
        self.log(f"call {call.rec.id} loads {key} v{version} for {duration}s{' (fails)' if error else ''}")
        ctoken = call.token

        def done() -> None:
            if call.frozen:
                alive[0] = _EXTENDS_AFTER_CLOSE and alive[0]  # a task frozen on a closed loop never ends
                return
            alive[0] = False
            call.loading = False
            if not (call.detached or call.token == ctoken):
                return  # cancelled: an inline load (no lease) is cancelled with its caller
            rec.end = self.time.now
            if error is not None:
                self._resume_load(call, ctoken, None, error)
                return
            rec.ok = True
            self._resume_load(call, ctoken, P.Loaded(None if value is None else dict(value), duration), None)

        self.after(duration, done)

    def _resume_load(self, call: Call, token: int, loaded: Any, error: BaseException | None) -> None:
        if call.detached or call.token == token:
            call.token += 1
            self._resume(call, loaded, error)

    def _loader_time(self, call: Call, key: str) -> tuple[float, BaseException | None]:
        duration = call.op.loader_s
        extra = 0.0
        if self.sc.fault_rate and self.rng.random() < self.sc.fault_rate:
            extra = self.rng.choice((0.2, 1.0, 6.0))
            self._fault("mlt.get_item", key, f"delay {extra}s", call)
        deadline = self.mlt.timeout_s
        if extra >= deadline:
            return deadline, MltUnavailable(f"mlt.get_item {key}: no answer within {deadline}s (model)")
        if self._chance("mlt.get_item", key, "fail", call):
            return extra, MltUnavailable(f"mlt.get_item {key}: connection failed (injected)")
        if call.op.loader_fails:
            return duration + extra, LoaderError(f"loader of {key} failed (scenario)")
        return duration + extra, None

    def _extend(self, call: Call | None, lkey: str, token: bytes, alive: list[bool]) -> None:
        """Re-arm the lease every third of its TTL while the load runs (``mw.drive.Extender``)."""
        manager = call.manager if call is not None else None
        assert manager is not None
        ttl_ms = max(1, int(self.sc.lease_ttl_s * 1000))

        def tick() -> None:
            if not alive[0]:
                return
            loop = call.loop if call is not None else None
            if loop is not None and loop.is_closed() and not _EXTENDS_AFTER_CLOSE:
                return
            saved, self.current = self.current, call
            step = call.step if call is not None else ""
            if call is not None:
                call.step = "extend"
            try:
                if not manager.cluster.leases.extend(lkey, token, ttl_ms):
                    return
            except Exception:
                manager.telemetry.l2_errors += 1
            finally:
                if call is not None:
                    call.step = step
                self.current = saved
            self.after(ttl_ms / 3000, tick)

        self.after(ttl_ms / 3000, tick)

    def _wake(self, key: str) -> None:
        """The landed message: waiters on ``key`` re-read now."""
        for call in self.calls:
            if call.waiting and call.key == key and not call.rec.ended and call.steps is not None:
                if call.read is not None and call.step == "wait":
                    call.token += 1
                    self._schedule(call, self.latency())
            elif call.waiting and call.key == key and call.plan is not None and call.plan.state == "wait":
                call.token += 1
                self.after(self.latency(), lambda c=call: self._split_poll(c, c.token))

    def _cancel(self, call: Call) -> None:
        if call.rec.ended or call.frozen:
            return
        self.log(f"cancel call {call.rec.id}")
        call.cancelled = True
        if call.loading and call.step in ("load",):
            # The holder's load runs in a task of its own: the caller stops waiting, the load goes on.
            call.detached = True
            self._end(call, "cancelled", asyncio.CancelledError())
            return
        call.token += 1
        self._schedule(call, 0.0, throw=asyncio.CancelledError())

    def _close_loop(self, call: Call) -> None:
        if call.frozen or call.loop is None or (call.rec.ended and not call.detached):
            return
        self.log(f"close the loop of call {call.rec.id}")
        call.loop.close()
        call.frozen = True  # the task is never resumed; its generator stays alive (held by mw.drive's task set)
        call.token += 1
        if not call.rec.ended:
            self._end(call, "closed", None)

    def _end(self, call: Call, how: str, value: Any) -> None:
        rec = call.rec
        if rec.ended:
            if call.detached and how == "error":
                rec.trace.append(f"raise:{type(value).__name__}")
            return
        if how == "error" and call.cancelled and isinstance(value, asyncio.CancelledError):
            how = "cancelled"  # its own cancellation
        rec.end = self.time.now
        rec.ended = how
        if how == "value":
            rec.value = value
            rec.trace.append("end")
        elif how == "error":
            rec.error = value
            rec.trace.append(f"raise:{type(value).__name__}")
        else:
            rec.trace.append(how)
        self.log(f"call {rec.id} ends: {how} {value!r}")

    # --- split phase: the runtime's begin_load / poll_load / finish_load ---------------------------------------
    def _split(self, call: Call, fn: Callable[[], Any]) -> Any:
        self.current = call
        try:
            return fn()
        except Exception as exc:
            self._end(call, "error", exc)
            call.plan = None
            return None
        finally:
            self.current = None

    def _split_begin(self, call: Call) -> None:
        plan = self._split(call, lambda: call.manager.begin_load(KIND, SCOPE, call.op.item))
        if plan is not None:
            self._split_state(call, plan)

    def _split_state(self, call: Call, plan: Any) -> None:
        call.plan = plan
        if plan.state in ("hit", "negative", "done"):
            call.plan = None
            self._end(call, "value", plan.value)
            return
        if plan.state == "wait":
            call.waiting = True
            self.after(P.POLL_S, lambda t=call.token: self._split_poll(call, t))
            return
        # lead: this caller loads, keeping its lease alive, then finishes the plan
        call.waiting = False
        call.loading = True
        key = call.key
        epoch = call.lease_epoch if plan.token is not None else self.history.epoch[key]
        rec = LoadRecord(key, epoch, call.rec.id, self.time.now)
        self.history.loads.append(rec)
        _, value = self.mlt.snapshot(key)
        duration, error = self._loader_time(call, key)
        alive = [True]
        if plan.token is not None:
            self._extend(call, K.lease_key(key), plan.token, alive)

        def done() -> None:
            alive[0] = False
            call.loading = False
            rec.end = self.time.now
            if error is not None:
                call.plan = None  # dropping the plan releases its lease and abandons its flight
                self._end(call, "error", error)
                return
            rec.ok = True
            loaded = None if value is None else dict(value)
            self.current = call
            try:
                call.manager.finish_load(plan, loaded, ttl_s=call.op.ttl_s, delta=duration)
            except Exception as exc:
                self._end(call, "error", exc)
                return
            finally:
                self.current = None
                call.plan = None
            call.finished = True
            self._end(call, "value", loaded)

        self.after(duration, done)

    def _split_poll(self, call: Call, token: int) -> None:
        if call.token != token or call.rec.ended or call.plan is None:
            return
        plan = self._split(call, lambda: call.manager.poll_load(call.plan))
        if plan is not None:
            if plan.state == "wait" and self.time.now - call.rec.start > LOAD_TIMEOUT_S + 1:
                self._end(call, "error", LoadTimeout(call.key, LOAD_TIMEOUT_S))
                call.plan = None
                return
            self._split_state(call, plan)


_EXTENDS_AFTER_CLOSE = False
"""Whether a holder whose loop closed keeps extending its lease (``mw.drive`` stops it: see docs/explorer.md)."""


def _raiser(error: type[Exception], message: str) -> Callable[[], None]:
    """An ``Act`` that raises a fresh error: a ``Fail`` holds its exception, whose traceback then holds the
    seam's frame and, through it, the caller's frames (a cycle only a collection frees)."""

    def fail() -> None:
        raise error(message)

    return fail


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def _no_replay_thread() -> None:
    """``Cluster.replay_soon`` replaced: the scheduler replays on its tick, in virtual time."""


def _run_now(coro: Any) -> Any:
    """Run a coroutine that never suspends (an embedded-mode delete) to its end, here."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("an embedded-mode call suspended")


def _item_key(key: str | None) -> str | None:
    if key is None:
        return None
    for prefix in ("mw:lease:", "mw:neg:"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def run_seed(seed: int, *, verbose: bool = False) -> Result:
    explorer = Explorer(scenario(seed), verbose=verbose)
    return explorer.run()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The runtime logs every injected failure as a warning: thousands of seeds would flood the output."""
    import logging

    logger = logging.getLogger("mw")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


__all__ = ["Explorer", "Result", "Scenario", "run_seed", "scenario"]
