"""The read-through protocol, written once: every decision of a cached read as plain steps.

The protocol is a generator that does no I/O itself (sans-IO, as h11 does it). It *yields* an
effect for each thing it needs from the world (a node-tier or L2 read, a lease command, the load, a
wait) and is sent the result, or has the failure thrown into it. Three drivers run the same steps
(:mod:`mw.drive`): blocking calls, asyncio, and the split-phase API (``begin_load``/``poll_load``/
``finish_load``) whose caller does the load and the waiting itself (SimPy); the test suite's
explorer drives it a fourth way, over a model of L2 on a virtual clock. So sync and async cannot
drift: they are not two copies.

The steps (docs/runtime.md has the table with the invariants):

1. **lookup**: L1, then L2 (the caller checked L0). A hit fills the tiers above. XFetch may decide to
   refresh a hit early, only if this caller can lead without waiting.
2. **negative**: a confirmed-absent marker answers ``None``.
3. **join**: the process's single flight. A follower waits on the runtime-owned entry, bounded by
   the call's deadline; an abandoned entry is led again.
4. **acquire**: the cluster lease (``SET NX PX``). Unreachable L2: load without it, fill locally.
5. **recheck** (check-after-lock): with the lease held, read L2 again; another holder's value may
   have landed between our miss and our acquire. Found: release and return it, no load.
6. **load** and **fill**: the holder loads (the driver extends the lease while the loader runs) and
   fills L2 by compare-and-set on its token, so a fill loaded before an invalidation is refused.
7. **wait**: a waiter re-reads ``[value, negative, lease]`` when woken by the landed message or
   after :data:`POLL_S`; it waits as long as the holder's lease lives and takes over only once the
   lease is gone; past the call's deadline (``MW_LOAD_TIMEOUT_S``) it raises :class:`LoadTimeout`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from mw import keys as K
from mw import writes
from mw.errors import CodecError, L2CommandError, LoadTimeout, TaskRowError, TierUnavailable
from mw.faults import INJECTORS
from mw.flight import ABANDONED, Entry
from mw.refresh import jittered, xfetch_due
from mw.telemetry import task_ttls
from mw.tiers import MISS
from mw.tiers.l0 import private_copy

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers
    from mw.lease import Leases
    from mw.telemetry import Telemetry

log = logging.getLogger("mw")

POLL_S = 0.05
"""How often a lease waiter re-checks L2 when no landed message wakes it (lost message, dead holder)."""

Loader = Callable[[], Any]
TTLFor = Callable[[Any], "float | None"]
L2_FAULTS = (TierUnavailable, L2CommandError)


def lease_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# --- effects: what the protocol asks of its driver ---------------------------------------------------
class L1Get(NamedTuple):
    key: str


class L2Read(NamedTuple):
    """``GET`` for one key, ``MGET`` for several; the result is a list either way."""

    keys: list[str]


class Acquire(NamedTuple):
    lease_key: str
    ttl_ms: int


class Fill(NamedTuple):
    lease_key: str
    token: bytes
    target: str
    other: str
    data: bytes
    ttl_ms: int
    key: str


class Release(NamedTuple):
    lease_key: str
    token: bytes


class Load(NamedTuple):
    """Run the loader; ``token`` set: this caller holds ``lease_key``, keep it alive meanwhile.

    The result sent back is a :class:`Loaded`.
    """

    key: str
    lease_key: str | None
    token: bytes | None


class Loaded(NamedTuple):
    value: Any
    delta: float = 0.0
    """How long the load took (seconds): XFetch's ``delta``, carried in the envelope."""
    ttl_s: float | None = None
    """A TTL decided by the caller of a split-phase load; ``None``: the read's own."""


class Watch(NamedTuple):
    """Start listening for the landed message of ``key`` (before the read that may decide to wait, so a
    message that arrives between that read and the wait is not missed)."""

    key: str


class Wait(NamedTuple):
    """Sleep until the landed message for ``key`` arrives or the driver's clock reaches ``until``."""

    key: str
    until: float


class FlightWait(NamedTuple):
    """Wait for this process's leader of the key: the result is its value, :data:`ABANDONED`, or
    :data:`ALONE` when this caller cannot wait for it (it runs on the leader's own event loop)."""

    entry: Entry
    until: float


class Step(NamedTuple):
    """A named protocol step, yielded only while a fault injector is installed (:mod:`mw.faults`): the
    driver runs the seam's point ``protocol.<name>`` there, and the explorer schedules other callers."""

    name: str
    key: str


Effect = L1Get | L2Read | Acquire | Fill | Release | Load | Watch | Wait | FlightWait | Step
Steps = Generator[Effect, Any, "Outcome"]


class _Alone:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ALONE"


ALONE: Any = _Alone()

_UNREACHABLE: Any = object()
"""What an acquire that could not reach L2 leaves as its token."""


class Outcome(NamedTuple):
    value: Any
    state: str
    """``hit`` (a tier had it), ``negative`` (known absent), ``loaded`` (this caller loaded it) or
    ``shared`` (another caller's load, in this process or from L2 after a wait); ``miss`` for a lookup
    that does not load."""
    filled: bool = False
    """For ``loaded``: whether L2 (and the tiers above) took the value."""

    @property
    def hit(self) -> bool:
        return self.state in ("hit", "negative")


@dataclass
class Read:
    """What one read-through call asks for: its key, how to load it, its TTL rule, its deadline."""

    key: str
    ttl_s: float | None = None
    ttl_for: TTLFor | None = None
    deadline: float = math.inf
    now: Callable[[], float] = lambda: 0.0
    loop: asyncio.AbstractEventLoop | None = None
    """The caller's event loop (``None``: a thread): a sync caller cannot wait on its own loop's leader."""
    fallback: Callable[[], Any] | None = None
    """Asked after L1 and L2 missed, before any load (the agent's own typed item); :data:`MISS` if none."""
    xfetch: bool = False
    """Whether a hit may be refreshed early (XFetch)."""
    loads: bool = True
    """``False``: a lookup only; a miss returns ``None`` without loading."""


# --- the steps ---------------------------------------------------------------------------------------
def read_through(agent: AgentTiers, read: Read, *, lookup: bool = True) -> Steps:
    """L1 -> L2 -> negative -> one protected load. The caller already missed L0 (or had a hit that
    XFetch wants refreshed: then ``lookup=False`` and :func:`refresh` runs instead)."""
    key = read.key
    if not agent.enabled:
        agent.missed(key)
        if not read.loads:
            return Outcome(None, "miss")
        loaded = yield Load(key, None, None)
        return Outcome(loaded.value, "loaded")
    if lookup:
        if INJECTORS:
            yield Step("lookup", key)
        value = yield from cached(agent, key)
        if value is MISS and read.fallback is not None:
            value = read.fallback()
        if value is not MISS:
            if read.xfetch and refresh_due(agent, key):
                return (yield from refresh(agent, read, value))
            return Outcome(value, "hit")
    if not read.loads:
        agent.missed(key)
        return Outcome(None, "miss")
    if agent.config.negative_cache:
        if INJECTORS:
            yield Step("negative", key)
        if (yield from negative_hit(agent, key)):
            return Outcome(None, "negative")
    agent.missed(key)
    return (yield from miss(agent, read))


def cached(agent: AgentTiers, key: str) -> Generator[Effect, Any, Any]:
    """L1 then L2, filling the tiers above; :data:`MISS` when neither has it."""
    gen = agent.cluster.generation
    value = agent.from_l1(key, (yield L1Get(key)), gen)
    if value is MISS:
        value = yield from l2_value(agent, key)
    return value


def l2_value(agent: AgentTiers, key: str) -> Generator[Effect, Any, Any]:
    gen = agent.cluster.generation
    try:
        (data,) = yield L2Read([key])
    except L2_FAULTS:
        agent.telemetry.l2_errors += 1
        return MISS
    return MISS if data is None else agent.accept(key, data, gen, from_l2=True)


def negative_hit(agent: AgentTiers, key: str) -> Generator[Effect, Any, bool]:
    nkey = K.negative_key(key)
    data = yield L1Get(nkey)
    from_l2 = data is None
    if from_l2:
        try:
            (data,) = yield L2Read([nkey])
        except L2_FAULTS:
            agent.telemetry.l2_errors += 1
            data = None
    if agent.is_negative(data, nkey if from_l2 else None):
        agent.telemetry.negative_cache_hits += 1
        return True
    return False


def miss(agent: AgentTiers, read: Read) -> Steps:
    """Every tier missed: one load for the process (single flight) and the cluster (the lease)."""
    key = read.key
    if not agent.config.stampede_protection:
        count_load(agent, key)
        loaded = yield Load(key, None, None)
        filled = fill_unleased(agent, read, loaded, "all", agent.cluster.generation)
        return Outcome(loaded.value, "loaded", filled)
    flight = agent.cluster.flight
    while True:
        if INJECTORS:
            yield Step("join", key)
        entry, leads = flight.join(key, read.loop)
        if leads:
            break
        got = yield FlightWait(entry, read.deadline)
        if got is ABANDONED:
            continue
        if got is ALONE:
            count_load(agent, key)
            loaded = yield Load(key, None, None)
            return Outcome(loaded.value, "loaded")
        agent.telemetry.coalesced += 1
        return Outcome(private_copy(got), "shared")
    try:
        outcome = yield from leased(agent, read)
    except Exception as exc:
        flight.fail(entry, exc)
        raise
    except BaseException:
        flight.abandon(entry)
        raise
    flight.land(entry, outcome.value)
    return outcome._replace(value=private_copy(outcome.value))


def leased(agent: AgentTiers, read: Read) -> Steps:
    """Hold the cluster lease and load, or wait for its holder's value."""
    key, telemetry = read.key, agent.telemetry
    lkey, nkey = K.lease_key(key), K.negative_key(key)
    ms = lease_ms(agent.config.lease_ttl_s)
    while True:
        if INJECTORS:
            yield Step("acquire", key)
        try:
            token = yield Acquire(lkey, ms)
        except L2_FAULTS:
            telemetry.l2_errors += 1
            token = _UNREACHABLE
        if token is _UNREACHABLE:  # loaded outside the except clause: a suspended handler keeps its exception,
            gen = agent.cluster.generation  # whose traceback keeps the driver's frames (a dropped plan) alive
            count_load(agent, key)
            loaded = yield Load(key, None, None)
            return Outcome(loaded.value, "loaded", fill_unleased(agent, read, loaded, "local", gen))
        if token is not None:
            found = yield from recheck(agent, key, lkey, token)
            if found is not MISS:
                return Outcome(found, "shared")
            count_load(agent, key)
            return (yield from hold(agent, read, lkey, token))
        telemetry.lease_waits += 1
        found = yield from wait_for_holder(agent, read, lkey, nkey)
        if found is not MISS:
            return Outcome(found, "shared")


def count_load(agent: AgentTiers, key: str) -> None:
    """A miss's load of a key whose last load's value should still be cached is a repeated load (counted).

    Not called for early refreshes and prewarming, which reload before expiry on purpose.
    """
    if agent.cluster.loads.repeated(key, agent.clock()):
        agent.telemetry.repeated_loads += 1


def recheck(agent: AgentTiers, key: str, lkey: str, token: bytes) -> Generator[Effect, Any, Any]:
    """Check-after-lock: a value (or absence) that landed after our miss is served, not loaded again."""
    if INJECTORS:
        yield Step("recheck", key)
    gen = agent.cluster.generation
    try:
        data, neg = yield L2Read([key, K.negative_key(key)])
    except L2_FAULTS:
        agent.telemetry.l2_errors += 1
        return MISS
    found = MISS
    if data is not None:
        found = agent.accept(key, data, gen, from_l2=True, counted=True, recheck=True)
    if found is MISS and agent.is_negative(neg, K.negative_key(key)):
        found = None
    if found is not MISS:
        agent.telemetry.lease_rechecks += 1
        yield from release(agent, lkey, token)
    return found


def wait_for_holder(agent: AgentTiers, read: Read, lkey: str, nkey: str) -> Generator[Effect, Any, Any]:
    """The holder's value (``None``: absent), or :data:`MISS` once its lease is gone (take it over)."""
    key = read.key
    yield Watch(key)
    while True:
        if INJECTORS:
            yield Step("wait", key)
        gen = agent.cluster.generation
        try:
            data, neg, holder = yield L2Read([key, nkey, lkey])
        except L2_FAULTS:
            agent.telemetry.l2_errors += 1
            return MISS
        if data is not None:
            value = agent.accept(key, data, gen, from_l2=True, counted=True)
            if value is not MISS:
                return value
        if agent.is_negative(neg, nkey):
            return None
        if holder is None:
            return MISS
        now = read.now()
        if now >= read.deadline:
            agent.telemetry.load_timeouts += 1
            log.warning("Gave up waiting for the holder of %s after the load deadline", key)
            raise LoadTimeout(key, agent.config.load_timeout_s)
        yield Wait(key, min(read.deadline, now + POLL_S))


def hold(agent: AgentTiers, read: Read, lkey: str, token: bytes) -> Steps:
    """The lease holder's load and compare-and-set fill; the lease is released unless the fill took it."""
    key = read.key
    # Held strongly: a dropped plan is closed by the garbage collector, maybe after the manager is gone.
    leases, telemetry = agent.cluster.leases, agent.telemetry
    if INJECTORS:
        yield Step("load", key)
    try:
        loaded = yield Load(key, lkey, token)
    except Exception:
        yield from release(agent, lkey, token)
        raise
    except GeneratorExit:  # the plan dropped: no driver to run an effect, maybe the garbage collector's thread
        release_aside(leases, telemetry, lkey, token)
        raise
    except BaseException:  # cancelled: no driver to run an effect
        release_now(leases, telemetry, lkey, token)
        raise
    fill = fill_for(agent, read, loaded, token)
    filled = False
    if fill is not None:
        if INJECTORS:
            yield Step("fill", key)
        gen = agent.cluster.generation
        try:
            filled = yield fill.effect
        except L2_FAULTS:
            agent.telemetry.l2_errors += 1
            agent.telemetry.l2_write_failures += 1
        else:
            after_fill(agent, key, filled, fill, loaded.delta, gen)
    if not filled:
        yield from release(agent, lkey, token)
    return Outcome(loaded.value, "loaded", filled)


def release(agent: AgentTiers, lkey: str, token: bytes) -> Generator[Effect, Any, None]:
    if INJECTORS:
        yield Step("release", lkey)
    try:
        yield Release(lkey, token)
    except L2_FAULTS:
        agent.telemetry.l2_errors += 1


def release_now(leases: Leases, telemetry: Telemetry, lkey: str, token: bytes) -> None:
    """Release without the driver: the caller was cancelled or its plan dropped (best effort)."""
    try:
        leases.release(lkey, token)
    except Exception:
        telemetry.l2_errors += 1


RELEASE_WAIT_S = 2.0
"""How long a dropped plan's close waits for its lease release before it lets the release finish alone."""

_release_stalls = threading.local()
"""Per thread: when a wait for a release last ran out. The collector may close many plans in one pass in a thread
that holds the lock their releases need: after one wait runs out, the others in that pass do not wait (waiting
2 s each stalled that thread past a lease's life, and another caller loaded the key it was loading)."""


def release_aside(leases: Leases, telemetry: Telemetry, lkey: str, token: bytes) -> None:
    """Release a dropped plan's lease from a thread of its own, waited for a bounded time.

    The garbage collector closes a dropped plan in whatever thread it runs, maybe one that holds a
    lock the release needs (the embedded server's, a connection pool's): releasing inline could
    deadlock. Waiting keeps the release as prompt as an inline one whenever nothing is held.
    """
    if sys.is_finalizing():  # no new threads (``start`` may block for good): nothing else runs now either
        release_now(leases, telemetry, lkey, token)
        return
    try:
        releaser = threading.Thread(
            target=release_now, args=(leases, telemetry, lkey, token), daemon=True, name="mw-lease-release"
        )
        releaser.start()
    except RuntimeError:  # interpreter shutdown: no new threads
        release_now(leases, telemetry, lkey, token)
        return
    stalled = getattr(_release_stalls, "at", None)
    if stalled is not None and time.monotonic() - stalled < RELEASE_WAIT_S:
        return
    releaser.join(RELEASE_WAIT_S)
    if releaser.is_alive():
        _release_stalls.at = time.monotonic()


def lead_if_free(agent: AgentTiers, read: Read) -> Generator[Effect, Any, Outcome | None]:
    """Load now only if nobody loads this key in the process or the cluster (XFetch, prewarm).

    ``None``: someone else is loading it (or L2 is unreachable): keep what is cached.
    """
    key = read.key
    flight = agent.cluster.flight
    entry = flight.lead_if_idle(key, read.loop)
    if entry is None:
        return None
    try:
        lkey = K.lease_key(key)
        try:
            token = yield Acquire(lkey, lease_ms(agent.config.lease_ttl_s))
        except L2_FAULTS:
            agent.telemetry.l2_errors += 1
            token = None
        if token is None:
            flight.abandon(entry)
            return None
        outcome = yield from hold(agent, read, lkey, token)
    except Exception as exc:
        flight.fail(entry, exc)
        raise
    except BaseException:
        flight.abandon(entry)
        raise
    flight.land(entry, outcome.value)
    return outcome._replace(value=private_copy(outcome.value))


def refresh_due(agent: AgentTiers, key: str) -> bool:
    """XFetch: whether a hit on ``key`` should refresh it before it expires."""
    delta = agent.deltas.get(key)
    if not delta:
        return False
    cluster = agent.cluster
    return xfetch_due(agent.clock(), agent.l0.expire_at(key), delta, agent.config.xfetch_beta, cluster.rng.random)


def refresh(agent: AgentTiers, read: Read, cached_value: Any) -> Steps:
    """An early refresh of a hit (XFetch): lead if free, else serve the cached value. The hit is valid until it
    expires, so a refresh whose load fails serves it too: the refresh was optional, the error only logged (its
    lease was released and its flight entry abandoned on the way out, as for any failed load)."""
    try:
        outcome = yield from lead_if_free(agent, read)
    except Exception as exc:
        log.warning("early refresh of %s failed, serving the cached value: %s", read.key, exc)
        return Outcome(cached_value, "hit")
    if outcome is None:
        return Outcome(cached_value, "hit")
    agent.telemetry.early_refreshes += 1
    return outcome._replace(state="hit")


# --- fills -------------------------------------------------------------------------------------------
class Filling(NamedTuple):
    effect: Fill
    expire_at: float
    value: Any
    size: int
    negative: bool


def ttl_of(agent: AgentTiers, read: Read, loaded: Loaded) -> float:
    """The TTL of a loaded value: the read's rule (``ttl_for``), else its TTL (or the split-phase caller's),
    else ``MW_L2_TTL_S``; plain TTLs get the downward jitter."""
    if loaded.ttl_s is None and read.ttl_for is not None:
        ttl = read.ttl_for(loaded.value)
        return agent.config.l2_ttl_s if ttl is None else ttl
    base = loaded.ttl_s if loaded.ttl_s is not None else read.ttl_s
    base = agent.config.l2_ttl_s if base is None else base
    return jittered(base, agent.config.ttl_jitter, agent.cluster.rng.random)


def fill_for(agent: AgentTiers, read: Read, loaded: Loaded, token: bytes = b"") -> Filling | None:
    """What a holder writes: the value, the negative marker, or nothing.

    A value the cache cannot hold (too large, a type the codec refuses, a row without a usable TTL)
    is still returned to the callers; it is just not cached, and that is counted and logged.
    """
    key, value = read.key, loaded.value
    lkey = K.lease_key(key)
    codec = agent.cluster.codec
    if value is None:
        if not agent.config.negative_cache:
            return None
        nkey = K.negative_key(key)
        nttl = agent.config.negative_ttl_s
        if nttl <= 0:
            return None
        data = codec.encode(True, agent.clock() + nttl, nkey)
        return Filling(Fill(lkey, token, nkey, key, data, lease_ms(nttl), key), 0.0, None, 0, True)
    try:
        ttl = ttl_of(agent, read, loaded)
        if ttl <= 0:
            return None
        expire_at = agent.clock() + ttl
        data, size = codec.encode_sized(value, expire_at, key, loaded.delta)
    except (CodecError, TaskRowError) as exc:
        agent.telemetry.uncacheable += 1
        log.warning("Loaded value for %s is returned but not cached: %s", key, exc)
        return None
    task_ttls.observe(key, value, ttl, agent.config)
    return Filling(Fill(lkey, token, key, K.negative_key(key), data, lease_ms(ttl), key), expire_at, value, size, False)


def after_fill(agent: AgentTiers, key: str, filled: bool, fill: Filling, delta: float, gen: int) -> None:
    """After the compare-and-set in L2: keep local copies unless something was dropped meanwhile."""
    if not filled:
        agent.telemetry.stale_sets_prevented += 1
        log.info("Fill of %s refused: invalidated while loading (stale set prevented)", key)
        return
    cluster = agent.cluster
    now = agent.clock()
    cluster.loads.loaded(key, now + agent.config.negative_ttl_s if fill.negative else fill.expire_at, now)
    if fill.negative:
        cluster.drop_local([fill.effect.target])  # a stale negative copy in this node's L1 goes too
        return
    if cluster.pending and fill.effect.lease_key:  # L2 took a fresh value: a delete it missed is moot now
        cluster.pending.settle([key])
    if cluster.generation != gen:
        return
    agent.node.l1.set(key, fill.effect.data, fill.expire_at)
    agent.l0.set(key, fill.value, fill.expire_at, fill.size)
    agent.remember_delta(key, delta)
    if cluster.generation != gen:
        agent.unfill(key)


def fill_unleased(agent: AgentTiers, read: Read, loaded: Loaded, where: str, gen: int) -> bool:
    """A load without the lease cannot refuse a stale fill in L2. ``where``: ``"all"`` only with stampede
    protection switched off (that risk was chosen); ``"local"`` when L2 is unreachable (L0 and L1, kept
    only if nothing was dropped during the load)."""
    key, value = read.key, loaded.value
    if value is None:
        return False
    try:
        ttl = ttl_of(agent, read, loaded)
        if ttl <= 0:
            return False
        if where == "all":
            writes.write(agent, key, value, ttl, broadcast=False)
            agent.cluster.loads.loaded(key, agent.clock() + ttl, agent.clock())
            return True
        expire_at = agent.clock() + ttl
        data, size = agent.cluster.codec.encode_sized(value, expire_at, key)
    except (CodecError, TaskRowError) as exc:
        agent.telemetry.uncacheable += 1
        log.warning("Loaded value for %s is returned but not cached: %s", key, exc)
        return False
    task_ttls.observe(key, value, ttl, agent.config)
    fill = Filling(Fill("", b"", key, "", data, 0, key), expire_at, value, size, False)
    after_fill(agent, key, True, fill, 0.0, gen)
    return True
