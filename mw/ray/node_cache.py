"""L1 on Ray: one named node-cache actor per Ray node, and :class:`RayNodeL1`, the tier agents plug in.

In one process, agents share the in-process :class:`~mw.tiers.l1.L1Cache`. On Ray every agent is its own
process, so the node's L1 lives in an actor pinned to the node (``NodeAffinitySchedulingStrategy``, not
soft), named per node and per Mw deployment, created race-free with ``get_if_exists=True`` and detached so
it outlives whichever agent happened to create it. Inside, it is an ``L1Cache``: bounded by
``MW_L1_MAX_ITEMS`` and ``MW_L1_MAX_BYTES`` (S3-FIFO), an entry capped by ``MW_L1_TTL_S`` and by the
item's own expiry.

The actor runs on no clock of its own: each call carries the caller's ``now``. Agents on a manual or
simulated clock then see the same expiry they would see in process, and the actor never has to agree
with anyone's clock.

Why it is safe to send ``set``/``pop`` without waiting: the actor is serial (``max_concurrency=1``) and Ray
runs one caller's calls to an actor in submission order, so an agent's own read always comes after its own
pops and fills. Other agents learn of a change through the invalidation bus and pop it themselves. The
replies are still collected (every ``HARVEST_EVERY`` writes, and on ``flush``): a write that failed is
counted, never silently lost.

Failure is a tier error, as for L2: a read that times out or finds the actor gone is a miss (counted), and
the read goes on to L2. A dead actor's handle is dropped and re-acquired (``get_if_exists`` makes a new one)
after ``MW_TIER_RETRY_S``. Pops that could not be delivered while the tier was unreachable are remembered:
if the actor turns out to have survived, it is cleared before it serves this process again, so a missed
invalidation costs hits, never a stale read.

Values are envelopes (``bytes``) from :mod:`mw.codec`; the actor refuses anything else, so no object is
ever pickled into the cache (how Ray moves the bytes of a call is Ray's business).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Collection
from concurrent.futures import Future
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mw.clock import Clock, system_clock
from mw.config import MwConfig
from mw.tiers.l1 import L1Cache

log = logging.getLogger("mw.ray")

RAY_NAMESPACE = "mw"
"""Ray namespace of the node-cache actors (detached actors need one; jobs in any namespace find them)."""
ACTOR_PREFIX = "mw-l1"
HARVEST_EVERY = 32
"""Collect the replies of non-blocking writes after this many (one ``ray.wait`` for the batch)."""
MAX_PENDING = 4096
"""Unanswered writes beyond this make the writer wait for the oldest (backpressure, not an unbounded list)."""
ACQUIRE_TIMEOUT_S = 60.0


class NodeCache:
    """The node-cache actor: an :class:`L1Cache` driven by the caller's clock. Serial by design."""

    def __init__(self, max_items: int, node_id: str, max_bytes: int | None = None) -> None:
        self._now = 0.0
        self._l1 = L1Cache(max_items, 0.0, self._clock, max_bytes)
        self.node_id = node_id
        self.incarnation = uuid.uuid4().hex
        self.started_at = time.time()
        self.ops = dict.fromkeys(("get", "hit", "set", "pop", "clear"), 0)

    def _clock(self) -> float:
        return self._now

    def get(self, key: str, now: float) -> bytes | None:
        self._now = now
        self.ops["get"] += 1
        data = self._l1.get(key)
        if data is not None:
            self.ops["hit"] += 1
        return data

    def set(self, key: str, data: bytes, item_expire_at: float | None, now: float, ttl_s: float) -> float | None:
        """Store an envelope for at most ``ttl_s`` (the writer's ``MW_L1_TTL_S``) and never past the item."""
        if not isinstance(data, bytes):
            raise TypeError(f"the node cache stores envelopes (bytes), not {type(data).__name__}")
        self._now = now
        self._l1.ttl_s = ttl_s
        self.ops["set"] += 1
        return self._l1.set(key, data, item_expire_at)

    def pop(self, key: str) -> bool:
        self.ops["pop"] += 1
        return self._l1.pop(key)

    def clear(self) -> int:
        self.ops["clear"] += 1
        return self._l1.clear()

    def expire_at(self, key: str) -> float | None:
        return self._l1.expire_at(key)

    def size(self) -> int:
        return len(self._l1)

    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "incarnation": self.incarnation,
            "started_at": self.started_at,
            "items": len(self._l1),
            "bytes": self._l1.nbytes,
            "ops": dict(self.ops),
        }


_RemoteNodeCache: Any = ray.remote(NodeCache)


def current_node_id() -> str:
    """The Ray node this process runs on (``ray.init`` must have been called in a driver)."""
    return str(ray.get_runtime_context().get_node_id())


def node_cache_name(config: MwConfig, node_id: str) -> str:
    """``mw-l1:{namespace}:{digest}:{node_id}``: one actor per node and per deployment.

    The digest covers the Redis URL, the Mlt DSN and the namespace (without spelling out credentials):
    two deployments must never share an L1, as its keys carry no namespace.
    """
    digest = hashlib.sha1(repr(config.cluster_identity()).encode()).hexdigest()[:10]
    return f"{ACTOR_PREFIX}:{config.namespace or '-'}:{digest}:{node_id}"


class _Handle:
    """One per actor name per process: the handle every :class:`RayNodeL1` of the process shares.

    ``generation`` increases with each acquisition, so a late failure of a call made to an actor that was
    already replaced does not take the new one down.
    """

    def __init__(self, name: str, node_id: str, max_items: int, retry_s: float, max_bytes: int | None) -> None:
        self.name = name
        self.node_id = node_id
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.retry_s = retry_s
        self.lock = threading.Lock()
        self.actor: Any = None
        self.starting: Future[Any] | None = None
        self.generation = 0
        self.incarnation: str | None = None
        self.down_until = 0.0
        self.lost_pops = False
        self.acquisitions = 0
        self.failures = 0
        self.cleared_after_lost_pops = 0

    def current(self) -> tuple[Any, int]:
        """``(actor, generation)``, or ``(None, generation)`` while the tier is down or the actor starts."""
        actor = self.actor
        if actor is not None and self.starting is None:
            return actor, self.generation
        with self.lock:
            if self.actor is None:
                if time.monotonic() < self.down_until:
                    return None, self.generation
                self._acquire()
            starting = self.starting
            if starting is not None:
                if not starting.done():
                    return None, self.generation
                self._started(starting)
            return self.actor, self.generation

    def _acquire(self) -> None:
        options: dict[str, Any] = {
            "name": self.name,
            "namespace": RAY_NAMESPACE,
            "get_if_exists": True,
            "lifetime": "detached",
            "num_cpus": 0,
            "max_concurrency": 1,
            "max_restarts": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(self.node_id, soft=False),
        }
        try:
            self.actor = _RemoteNodeCache.options(**options).remote(self.max_items, self.node_id, self.max_bytes)
            self.starting = self.actor.info.remote().future()
        except RayError as exc:  # the GCS refused: stay down, try again later
            self._down(exc)
            return
        self.generation += 1
        self.acquisitions += 1

    def _started(self, starting: Future[Any]) -> None:
        self.starting = None
        try:
            info = starting.result(timeout=0)
        except (RayError, TimeoutError) as exc:
            self._down(exc)
            return
        if self.lost_pops and info["incarnation"] == self.incarnation:
            # It survived while we could not reach it: pops we owed it are lost. Our later calls are
            # ordered after this clear, so we never read an entry we failed to invalidate.
            self.actor.clear.remote()
            self.cleared_after_lost_pops += 1
            log.warning("Node cache %s survived an outage with invalidations undelivered: cleared", self.name)
        self.lost_pops = False
        self.incarnation = info["incarnation"]

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the actor answers (an agent's start-up); False if it did not in ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            actor, _ = self.current()
            if actor is not None:
                return True
            starting = self.starting
            if starting is not None:
                try:
                    starting.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # the next current() call records the failure
                    continue
            else:
                time.sleep(0.05)
        return False

    def failed(self, generation: int, exc: BaseException) -> None:
        """A call to the actor of ``generation`` found it gone: drop the handle, retry after ``retry_s``."""
        with self.lock:
            if generation == self.generation and self.actor is not None:
                self._down(exc)

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        self.actor = None
        self.starting = None
        self.down_until = time.monotonic() + self.retry_s
        log.warning(
            "Node cache %s unavailable (%s); L1 reads go to L2 for %.1fs", self.name, type(exc).__name__, self.retry_s
        )


_handles: dict[str, _Handle] = {}
_handles_lock = threading.Lock()


def _handle_for(name: str, node_id: str, max_items: int, retry_s: float, max_bytes: int | None) -> _Handle:
    with _handles_lock:
        handle = _handles.get(name)
        if handle is None:
            handle = _handles[name] = _Handle(name, node_id, max_items, retry_s, max_bytes)
        return handle


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


STAT_NAMES = (
    "reads",
    "hits",
    "read_errors",
    "timeouts",
    "skipped_reads",
    "writes",
    "write_failures",
    "skipped_writes",
    "lost_pops",
)


class RayNodeL1:
    """The node tier of an agent on Ray, with the interface of :class:`~mw.tiers.l1.L1Cache`.

    Plug it in with ``MwManager(organ_id, config, node=..., l1=RayNodeL1.for_config(config))``; all
    ``RayNodeL1`` objects of one process share one actor handle per node cache.
    """

    def __init__(
        self,
        name: str,
        node_id: str,
        *,
        max_items: int = 100_000,
        max_bytes: int | None = None,
        ttl_s: float = 30.0,
        timeout_s: float = 0.5,
        retry_s: float = 1.0,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self.node_id = node_id
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._handle = _handle_for(name, node_id, max_items, retry_s, max_bytes)
        self._pending: deque[tuple[Any, str, int]] = deque()
        self._lock = threading.Lock()
        self._since_harvest = 0
        self._checks: set[asyncio.Task[None]] = set()
        for stat in STAT_NAMES:
            setattr(self, stat, 0)

    reads: int
    hits: int
    read_errors: int
    timeouts: int
    skipped_reads: int
    writes: int
    write_failures: int
    skipped_writes: int
    lost_pops: int

    @classmethod
    def for_config(
        cls,
        config: MwConfig,
        *,
        clock: Clock | None = None,
        node_id: str | None = None,
        timeout_s: float | None = None,
    ) -> RayNodeL1:
        """The node tier of this process's Ray node for ``config`` (its L1 TTL, bounds and retry delay)."""
        from mw.ray.env import ray_l1_timeout_s

        node = current_node_id() if node_id is None else node_id
        return cls(
            node_cache_name(config, node),
            node,
            max_items=config.l1_max_items,
            max_bytes=config.l1_max_bytes,
            ttl_s=config.l1_ttl_s,
            timeout_s=ray_l1_timeout_s(config) if timeout_s is None else timeout_s,
            retry_s=config.tier_retry_s or 1.0,
            clock=system_clock if clock is None else clock,
        )

    def wait_ready(self, timeout_s: float = ACQUIRE_TIMEOUT_S) -> bool:
        """Block until the node actor answers: agents call it once at start-up, not on the read path."""
        return self._handle.wait_ready(timeout_s)

    # --- reads -------------------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        actor, generation = self._handle.current()
        if actor is None:
            self.skipped_reads += 1
            return None
        self.reads += 1
        try:
            data: bytes | None = ray.get(actor.get.remote(key, self._clock()), timeout=self.timeout_s)
        except (GetTimeoutError, RayError) as exc:
            self._read_failed(generation, exc)
            return None
        if data is not None:
            self.hits += 1
        return data

    async def get_async(self, key: str) -> bytes | None:
        """Await the actor's reply: a read from async code never blocks the event loop."""
        actor, generation = self._handle.current()
        if actor is None:
            self.skipped_reads += 1
            return None
        self.reads += 1
        ref = actor.get.remote(key, self._clock())
        try:
            data: bytes | None = await asyncio.wait_for(asyncio.wrap_future(ref.future()), self.timeout_s)
        except (asyncio.TimeoutError, RayError) as exc:
            self._read_failed(generation, exc)
            return None
        if data is not None:
            self.hits += 1
        return data

    def _read_failed(self, generation: int, exc: BaseException) -> None:
        self.read_errors += 1
        if isinstance(exc, (GetTimeoutError, asyncio.TimeoutError)):
            self.timeouts += 1
        elif isinstance(exc, RayActorError):
            self._handle.failed(generation, exc)
        else:
            log.warning("Node cache %s read failed: %s", self.name, exc)

    def expire_at(self, key: str) -> float | None:
        actor, generation = self._handle.current()
        if actor is None:
            return None
        try:
            value: float | None = ray.get(actor.expire_at.remote(key), timeout=self.timeout_s)
        except (GetTimeoutError, RayError) as exc:
            self._read_failed(generation, exc)
            return None
        return value

    def __len__(self) -> int:
        actor, generation = self._handle.current()
        if actor is None:
            return 0
        try:
            return int(ray.get(actor.size.remote(), timeout=self.timeout_s))
        except (GetTimeoutError, RayError) as exc:
            self._read_failed(generation, exc)
            return 0

    # --- writes ------------------------------------------------------------------------------------------
    def set(self, key: str, data: bytes, item_expire_at: float | None) -> float | None:
        """Send the envelope without waiting; return the expiry it gets (the actor computes the same)."""
        if self.ttl_s <= 0:
            return None
        now = self._clock()
        expire_at = now + self.ttl_s
        if item_expire_at is not None and item_expire_at < expire_at:
            expire_at = item_expire_at
        actor, generation = self._handle.current()
        if actor is None:
            self.skipped_writes += 1
            return None
        self._track(actor.set.remote(key, data, item_expire_at, now, self.ttl_s), "set", generation)
        return expire_at

    def pop(self, key: str) -> bool:
        """Send the delete without waiting. Returns False: whether a copy was there is not waited for."""
        actor, generation = self._handle.current()
        if actor is None:
            self._pop_lost()
            return False
        self._track(actor.pop.remote(key), "pop", generation)
        return False

    def clear(self) -> int:
        """Empty the node cache (the bus does this after a possibly missed message); waits for the count."""
        actor, generation = self._handle.current()
        if actor is None:
            self._pop_lost()
            return 0
        try:
            return int(ray.get(actor.clear.remote(), timeout=self.timeout_s))
        except (GetTimeoutError, RayError) as exc:
            self.write_failures += 1
            self._pop_lost(counted=False)
            if isinstance(exc, RayActorError):
                self._handle.failed(generation, exc)
            return 0

    def _pop_lost(self, counted: bool = True) -> None:
        if counted:
            self.lost_pops += 1
        self._handle.lost_pops = True

    def _track(self, ref: Any, op: str, generation: int) -> None:
        self.writes += 1
        with self._lock:
            self._pending.append((ref, op, generation))
            self._since_harvest += 1
            harvest = self._since_harvest >= HARVEST_EVERY
            overfull = len(self._pending) > MAX_PENDING
        if harvest:
            self.harvest()
        if overfull:
            self.flush(self.timeout_s, oldest=len(self._pending) - MAX_PENDING)

    def harvest(self) -> int:
        """Collect the replies that have arrived, without waiting; returns how many were collected."""
        with self._lock:
            self._since_harvest = 0
            pending = list(self._pending)
        if not pending:
            return 0
        refs = [p[0] for p in pending]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        return self._collect(pending, set(ready))

    def flush(self, timeout_s: float = 5.0, *, oldest: int | None = None) -> int:
        """Wait up to ``timeout_s`` for unanswered writes (all, or the ``oldest`` n); returns failures seen.

        Writes still unanswered after the wait count as failed: telemetry must not wait for them forever.
        """
        with self._lock:
            pending = list(self._pending)[: oldest if oldest is not None else None]
        if not pending:
            return 0
        refs = [p[0] for p in pending]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s, fetch_local=False)
        before = self.write_failures
        self._collect(pending, set(ready), give_up=True)
        return self.write_failures - before

    def _collect(self, pending: list[tuple[Any, str, int]], ready: Collection[Any], *, give_up: bool = False) -> int:
        done = [p for p in pending if p[0] in ready]
        late = [p for p in pending if p[0] not in ready] if give_up else []
        with self._lock:
            gone = {id(p[0]) for p in done + late}
            self._pending = deque(p for p in self._pending if id(p[0]) not in gone)
        for _, op, _generation in late:
            self.write_failures += 1
            if op == "pop":
                self._pop_lost(counted=False)
        if not done:
            return 0
        if _in_event_loop():
            # Reading replies with ray.get inside an asyncio actor would block its loop: await them instead.
            task = asyncio.get_running_loop().create_task(self._check_async(done))
            self._checks.add(task)  # a task nobody references may be collected before it runs
            task.add_done_callback(self._checks.discard)
        else:
            self._check(done)
        return len(done)

    def _check(self, done: list[tuple[Any, str, int]]) -> None:
        try:
            ray.get([p[0] for p in done], timeout=0)
            return
        except RayError:
            pass
        for ref, op, generation in done:
            try:
                ray.get(ref, timeout=0)
            except RayError as exc:
                self._write_failed(op, generation, exc)

    async def _check_async(self, done: list[tuple[Any, str, int]]) -> None:
        results = await asyncio.gather(*(asyncio.wrap_future(p[0].future()) for p in done), return_exceptions=True)
        for (_, op, generation), result in zip(done, results, strict=True):
            if isinstance(result, BaseException):
                self._write_failed(op, generation, result)

    def _write_failed(self, op: str, generation: int, exc: BaseException) -> None:
        self.write_failures += 1
        if op == "pop":
            self._pop_lost(counted=False)
        if isinstance(exc, RayActorError):
            self._handle.failed(generation, exc)
        else:
            log.warning("Node cache %s %s failed: %s", self.name, op, exc)

    # --- telemetry ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters of this tier in this process (collects arrived replies first)."""
        self.harvest()
        out = {stat: getattr(self, stat) for stat in STAT_NAMES}
        h = self._handle
        out.update(
            pending=len(self._pending),
            acquisitions=h.acquisitions,
            reacquired=max(0, h.acquisitions - 1),
            unavailable=h.failures,
            cleared_after_lost_pops=h.cleared_after_lost_pops,
        )
        return out

    def info(self) -> dict[str, Any] | None:
        """The actor's own view (incarnation, items, op counts), or ``None`` if it cannot be reached."""
        actor, generation = self._handle.current()
        if actor is None:
            return None
        try:
            info: dict[str, Any] = ray.get(actor.info.remote(), timeout=self.timeout_s)
        except (GetTimeoutError, RayError) as exc:
            self._read_failed(generation, exc)
            return None
        return info

    def __repr__(self) -> str:
        return f"RayNodeL1({self.name!r})"


def node_caches(namespace: str | None = None) -> list[str]:
    """Names of the live node-cache actors (of one Mw namespace, or all)."""
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a.get("namespace") == RAY_NAMESPACE and a["name"].startswith(ACTOR_PREFIX + ":")
    ]
    if namespace is not None:
        prefix = f"{ACTOR_PREFIX}:{namespace or '-'}:"
        names = [n for n in names if n.startswith(prefix) and n[len(prefix) :].count(":") == 1]
    return sorted(names)


def kill_node_caches(namespace: str | None = None) -> int:
    """Kill the node-cache actors (detached: they outlive jobs until killed). Returns how many."""
    killed = 0
    for name in node_caches(namespace):
        try:
            ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE))
            killed += 1
        except ValueError:  # gone meanwhile
            continue
    return killed
