"""The drivers of :mod:`mw.protocol`: blocking, asyncio and split-phase.

Each driver answers the protocol's effects with real I/O and nothing else: every decision is in
the protocol. What runs where:

* **sync**: everything on the calling thread; a lease holder's loader runs there too, while a
  helper thread extends the lease.
* **async**: tier commands on the caller's event loop. The holder's loader runs on the caller's
  loop as well (a loader may need it: an asyncpg pool belongs to its loop), but in a task of its
  own, which the caller awaits through ``asyncio.shield``: a caller that times out or is cancelled
  ends only its own wait, and the load goes on for the others. If that loop closes, the load is
  cancelled, the flight entry abandoned, and a follower leads the next attempt.
* **split-phase**: ``begin``/``poll``/``finish`` never block. A plan stops at the load (``lead``:
  the caller loads and calls ``finish``) or at a wait (``wait``: the caller calls ``poll`` later).
  Dropping a plan closes its steps, which releases its lease and abandons its flight entry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar

from mw.errors import LoadTimeout, MltUnavailable
from mw.faults import apoint, point
from mw.flight import ABANDONED, Entry
from mw.protocol import (
    ALONE,
    POLL_S,
    Acquire,
    Effect,
    Fill,
    FlightWait,
    L1Get,
    L2Read,
    Load,
    Loaded,
    Outcome,
    Read,
    Release,
    Step,
    Steps,
    Wait,
    Watch,
)

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers
    from mw.protocol import Loader

T = TypeVar("T")


class Extender:
    """Keeps a lease alive while a slow loader runs: re-arms it every third of its TTL.

    An async holder's ``loop``: once it is closed the load can never end (nor stop this), so the lease
    is left to lapse and a waiter takes over.
    """

    def __init__(
        self, agent: AgentTiers, lease_key: str, token: bytes, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._stop = threading.Event()
        # What it needs, not the agent: the thread may outlive the load by a moment, and must not keep
        # a dropped agent alive meanwhile.
        ttl_ms = max(1, int(agent.config.lease_ttl_s * 1000))
        self._args = (agent.cluster.leases, agent.telemetry, lease_key, token, ttl_ms)
        self._loop = loop
        self._thread = threading.Thread(target=self._run, daemon=True, name="mw-lease-extend")
        self._thread.start()

    def _run(self) -> None:
        leases, telemetry, lease_key, token, ttl_ms = self._args
        while not self._stop.wait(ttl_ms / 3000):
            if self._loop is not None and self._loop.is_closed():
                return
            try:
                if not leases.extend(lease_key, token, ttl_ms):
                    return
            except Exception:
                telemetry.l2_errors += 1
                continue
            telemetry.lease_extensions += 1

    def stop(self) -> None:
        self._stop.set()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _timed_out(agent: AgentTiers, read: Read) -> LoadTimeout:
    agent.telemetry.load_timeouts += 1
    return LoadTimeout(read.key, agent.config.load_timeout_s)


class _Pending:
    __slots__ = ()


PENDING: Any = _Pending()
"""Keep waiting: the leader has not landed yet (``None`` is a value a leader lands: absent)."""


def _outcome_of_follow(agent: AgentTiers, entry: Entry, read: Read) -> Any:
    """One look at a flight entry: its result, ABANDONED, or PENDING (raises the leader's error)."""
    fut = entry.future
    if fut.done():
        return fut.result()
    if entry.leader_gone():
        agent.cluster.flight.abandon(entry)
        return ABANDONED
    if read.now() >= read.deadline:
        raise _timed_out(agent, read)
    return PENDING


# --- sync --------------------------------------------------------------------------------------------
def run_sync(agent: AgentTiers, steps: Generator[Effect, Any, T], read: Read, loader: Loader) -> T:
    wake: threading.Event | None = None
    unregister = None
    send: Any = None
    throw: BaseException | None = None
    try:
        while True:
            try:
                effect = steps.send(send) if throw is None else steps.throw(throw)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, throw = None, None
            try:
                if isinstance(effect, Watch):
                    if wake is None:
                        wake = threading.Event()
                        bus = agent.cluster.bus
                        unregister = bus.waiters.register(effect.key, wake.set) if bus is not None else None
                elif isinstance(effect, Wait):
                    if wake is not None:
                        wake.wait(max(0.0, effect.until - read.now()))
                        wake.clear()
                    else:
                        time.sleep(max(0.0, effect.until - read.now()))
                else:
                    send = _do_sync(agent, effect, read, loader)
            except BaseException as exc:
                throw = exc
    finally:
        if unregister is not None:
            unregister()
        steps.close()


def _do_sync(agent: AgentTiers, effect: Effect, read: Read, loader: Loader) -> Any:
    cluster = agent.cluster
    if isinstance(effect, Step):
        return point(f"protocol.{effect.name}", effect.key)
    if isinstance(effect, L1Get):
        return agent.node.l1.get(effect.key)
    if isinstance(effect, L2Read):
        keys = effect.keys
        return [cluster.l2.get(keys[0])] if len(keys) == 1 else cluster.l2.mget(keys)
    if isinstance(effect, Acquire):
        return cluster.leases.acquire(effect.lease_key, effect.ttl_ms)
    if isinstance(effect, Fill):
        return cluster.leases.fill(*effect)
    if isinstance(effect, Release):
        return cluster.leases.release(effect.lease_key, effect.token)
    if isinstance(effect, Load):
        extender = None if effect.token is None else Extender(agent, effect.lease_key or "", effect.token)
        started = time.perf_counter()
        try:
            value = loader()
        except MltUnavailable:
            agent.telemetry.mlt_errors += 1
            raise
        finally:
            if extender is not None:
                extender.stop()
        return Loaded(value, time.perf_counter() - started)
    if isinstance(effect, FlightWait):
        return _follow_sync(agent, effect.entry, read)
    raise TypeError(f"not a protocol effect: {effect!r}")


def _follow_sync(agent: AgentTiers, entry: Entry, read: Read) -> Any:
    if entry.loop is not None and entry.loop is _running_loop():
        return ALONE  # blocking here would stop the very loop that runs the leader's load
    while True:
        got = _outcome_of_follow(agent, entry, read)
        if got is not PENDING:
            return got
        with contextlib.suppress(concurrent.futures.TimeoutError):
            entry.future.result(timeout=max(0.0, min(POLL_S, read.deadline - read.now())))


# --- async -------------------------------------------------------------------------------------------
_TASKS: set[asyncio.Task[Any]] = set()
"""Holders' loads handed to a task of their own (strong references, or the loop may drop them)."""


def _cancel_swallowed() -> bool:
    """A cancellation requested while a client library awaited (and swallowed it, as redis clients have
    done while connecting): the caller asked to stop, so it stops here (Python 3.11+ can tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling is not None and cancelling())


def _retrieve(task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    if not task.cancelled():
        task.exception()  # the caller may have stopped waiting: its outcome is seen, not "never retrieved"


async def run_async(agent: AgentTiers, steps: Generator[Effect, Any, T], read: Read, loader: Loader) -> T:
    send: Any = None
    throw: BaseException | None = None
    waiter = _AsyncWake()
    handed_off = False
    try:
        while True:
            try:
                effect = steps.send(send) if throw is None else steps.throw(throw)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, throw = None, None
            if isinstance(effect, Load) and effect.token is not None:
                task = asyncio.get_running_loop().create_task(_hold_async(agent, steps, effect, read, loader))
                _TASKS.add(task)
                task.add_done_callback(_retrieve)
                handed_off = True  # the task owns the steps now
                return await asyncio.shield(task)
            try:
                send = await _do_async(agent, effect, read, loader, waiter)
            except BaseException as exc:
                throw = exc
            else:
                if _cancel_swallowed():
                    throw = asyncio.CancelledError()
    finally:
        waiter.close()
        if not handed_off:
            steps.close()


async def _hold_async(
    agent: AgentTiers, steps: Generator[Effect, Any, T], effect: Load, read: Read, loader: Loader
) -> T:
    """The holder's load and the rest of its steps, in a task no caller's cancellation reaches."""
    waiter = _AsyncWake()
    send: Any = None
    throw: BaseException | None = None
    pending: Effect = effect
    try:
        while True:
            try:
                send = await _do_async(agent, pending, read, loader, waiter)
            except BaseException as exc:
                throw = exc
            try:
                pending = steps.send(send) if throw is None else steps.throw(throw)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, throw = None, None
    finally:
        waiter.close()
        steps.close()


class _AsyncWake:
    """A landed-message wake-up for one async call, registered on its first wait."""

    def __init__(self) -> None:
        self.event: asyncio.Event | None = None
        self._unregister: Any = None

    def arm(self, agent: AgentTiers, key: str) -> asyncio.Event:
        if self.event is None:
            self.event = event = asyncio.Event()
            loop = asyncio.get_running_loop()

            def wake() -> None:
                if not loop.is_closed():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(event.set)

            bus = agent.cluster.bus
            self._unregister = bus.waiters.register(key, wake) if bus is not None else None
        return self.event

    def close(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None


async def _do_async(agent: AgentTiers, effect: Effect, read: Read, loader: Loader, waiter: _AsyncWake) -> Any:
    cluster = agent.cluster
    if isinstance(effect, Step):
        return await apoint(f"protocol.{effect.name}", effect.key)
    if isinstance(effect, L1Get):
        return await agent.node.l1.get_async(effect.key)
    if isinstance(effect, L2Read):
        keys = effect.keys
        return [await cluster.l2.get_async(keys[0])] if len(keys) == 1 else await cluster.l2.mget_async(keys)
    if isinstance(effect, Acquire):
        return await cluster.leases.acquire_async(effect.lease_key, effect.ttl_ms)
    if isinstance(effect, Fill):
        return await cluster.leases.fill_async(*effect)
    if isinstance(effect, Release):
        return await cluster.leases.release_async(effect.lease_key, effect.token)
    if isinstance(effect, Load):
        loop = asyncio.get_running_loop()
        extender = None if effect.token is None else Extender(agent, effect.lease_key or "", effect.token, loop)
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
        except MltUnavailable:
            agent.telemetry.mlt_errors += 1
            raise
        finally:
            if extender is not None:
                extender.stop()
        return Loaded(value, time.perf_counter() - started)
    if isinstance(effect, Watch):
        waiter.arm(agent, effect.key)
        return None
    if isinstance(effect, Wait):
        event = waiter.arm(agent, effect.key)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, effect.until - read.now()))
        event.clear()
        return None
    if isinstance(effect, FlightWait):
        return await _follow_async(agent, effect.entry, read)
    raise TypeError(f"not a protocol effect: {effect!r}")


async def _follow_async(agent: AgentTiers, entry: Entry, read: Read) -> Any:
    loop = asyncio.get_running_loop()
    landed = asyncio.Event()

    def wake(_fut: object) -> None:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(landed.set)

    entry.future.add_done_callback(wake)
    while True:
        got = _outcome_of_follow(agent, entry, read)
        if got is not PENDING:
            return got
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(landed.wait(), max(0.0, min(POLL_S, read.deadline - read.now())))


# --- split phase -------------------------------------------------------------------------------------
class LoadPlan:
    """A split-phase read-through in progress (:meth:`mw.MwManager.begin_load`).

    ``state`` is ``hit`` (``value`` is the cached or shared value), ``negative`` (known absent),
    ``lead`` (this caller must load, then call ``finish_load``, or ``fail_load`` if the load raised) or
    ``wait`` (call ``poll_load`` later); ``failed`` after ``fail_load``.
    """

    __slots__ = ("_effect", "_read", "_steps", "filled", "key", "shared", "state", "token", "value")

    def __init__(self, state: str, key: str, value: Any = None, token: bytes | None = None) -> None:
        self.state = state
        self.key = key
        self.value = value
        self.token = token
        self.filled = False
        self.shared = False
        """A ``hit``/``negative`` that is another caller's load (this read missed every tier: a miss)."""
        self._steps: Steps | None = None
        self._effect: Effect | None = None
        self._read: Read | None = None

    def __repr__(self) -> str:
        return f"LoadPlan({self.state!r}, {self.key!r})"


def begin(agent: AgentTiers, steps: Steps, read: Read) -> LoadPlan:
    plan = LoadPlan("wait", read.key)
    plan._steps, plan._read = steps, read
    return _advance(agent, plan, None, None)


def poll(agent: AgentTiers, plan: LoadPlan) -> LoadPlan:
    if plan.state != "wait" or plan._read is None:
        return plan
    effect, read = plan._effect, plan._read
    if isinstance(effect, FlightWait):
        try:
            got = _outcome_of_follow(agent, effect.entry, read)
        except Exception as exc:
            return _advance(agent, plan, None, exc)
        return plan if got is PENDING else _advance(agent, plan, got, None)
    return _advance(agent, plan, None, None)


def finish(agent: AgentTiers, plan: LoadPlan, value: Any, ttl_s: float | None, delta: float) -> bool:
    if plan.state != "lead" or plan._steps is None:
        raise ValueError(f"finish_load() takes a 'lead' plan, not {plan!r}")
    _advance(agent, plan, Loaded(value, delta, ttl_s), None)
    return plan.filled


def fail(agent: AgentTiers, plan: LoadPlan, error: Exception) -> None:
    """End a ``lead`` plan whose load raised ``error``: as a blocking read's loader error, the lease is released
    and the followers in the process get ``error``; nothing is cached (absence only as a loader's ``None``)."""
    if plan.state != "lead" or plan._steps is None:
        raise ValueError(f"fail_load() takes a 'lead' plan, not {plan!r}")
    try:
        _advance(agent, plan, None, error)
    except Exception as exc:
        if exc is not error:
            raise
        plan._steps = plan._effect = plan._read = None
        plan.state = "failed"


def _advance(agent: AgentTiers, plan: LoadPlan, send: Any, throw: BaseException | None) -> LoadPlan:
    steps, read = plan._steps, plan._read
    assert steps is not None and read is not None
    while True:
        try:
            effect = steps.send(send) if throw is None else steps.throw(throw)
        except StopIteration as stop:
            return _done(plan, stop.value)
        send, throw = None, None
        if isinstance(effect, Load):
            plan.state, plan.token, plan._effect = "lead", effect.token, effect
            return plan
        if isinstance(effect, Watch):
            continue  # the split-phase caller watches for landings itself (the simulator's landed events)
        if isinstance(effect, Wait):
            plan.state, plan._effect = "wait", effect
            return plan
        if isinstance(effect, FlightWait):
            fut = effect.entry.future
            if fut.done():
                send = fut.result() if fut.exception() is None else None
                throw = fut.exception()
                continue
            plan.state, plan._effect = "wait", effect
            return plan
        try:
            send = _do_sync(agent, effect, read, _no_loader)
        except Exception as exc:
            throw = exc


def _no_loader() -> Any:
    raise AssertionError("a split-phase plan loads through finish_load()")


def _done(plan: LoadPlan, outcome: Outcome) -> LoadPlan:
    plan._steps = plan._effect = plan._read = None
    plan.value, plan.filled, plan.shared = outcome.value, outcome.filled, outcome.state == "shared"
    if outcome.state == "negative" or (outcome.state == "shared" and outcome.value is None):
        plan.state = "negative"
    else:
        plan.state = "hit" if outcome.state != "loaded" else "done"
    return plan
