"""What managers share: a cluster (L2 connection pool, Mlt pool, codec, clock) and its nodes (L1 each).

Managers built in one process from equal configuration (and the same clock) get the same cluster, so
they share one Redis pool, one Mlt pool and the default node's L1. A cluster may have several named
nodes, each with its own L1. The cluster also knows every live manager, which is how a delete or a
write on one agent reaches the L0 of every other agent in the process.

A cluster stands for one process. ``cluster_for(..., name=...)`` makes clusters that share nothing but
the servers in one process, as separate processes would (the simulator's nodes, one cluster each), and
``transport=`` gives one a bus that another carrier than Redis pub/sub carries
(:class:`mw.invalidation.BusTransport`).

A write or delete that could not reach L2 is dropped from this process's tiers at once and kept in the
cluster's :class:`PendingInvalidations`; once L2 answers again (``RedisTier.on_recovered``, the next
write or delete that reaches it, or the bus's periodic tick) a replay thread sends it: the deletes again
(``DEL`` of the keys and their leases) and one invalidation message for the other processes. Without
the bus (``MW_PUBSUB=false``) only deletes are replayed, on the next write or delete or recovery.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from mw.clock import Clock, system_clock
from mw.codec import Codec
from mw.config import MwConfig
from mw.errors import TierUnavailable
from mw.flight import Flight
from mw.invalidation import LANDED_CHANNEL, BusTransport, InvalidationBus, PendingInvalidations
from mw.lease import Leases
from mw.mlt import MltStore, open_store
from mw.telemetry import RecentLoads
from mw.tiers.l0 import HolderIndex, L0Cache
from mw.tiers.l1 import L1Cache
from mw.tiers.l2 import RedisTier
from mw.tiers.topology import RedisTopology

log = logging.getLogger("mw.cluster")

DEFAULT_NODE = "local"
DEFAULT_CLUSTER = "process"
"""The name of a process's cluster when nobody asks for another one."""


class Node:
    """One node: its L1 and the L0s of the agents on it."""

    def __init__(self, name: str, l1: Any) -> None:
        self.name = name
        self.l1 = l1
        self.l0s: weakref.WeakSet[L0Cache] = weakref.WeakSet()


class Cluster:
    """One process's shared tiers (see the module doc); ``name`` tells clusters of one configuration apart."""

    def __init__(
        self,
        config: MwConfig,
        clock: Clock,
        *,
        name: str = DEFAULT_CLUSTER,
        transport: BusTransport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.name = name
        self.transport = transport
        """What carries this cluster's bus messages; ``None``: Redis pub/sub, with a subscriber thread."""
        self.codec = Codec(config.codec, config.compress_min_bytes, config.max_value_bytes)
        self._lock = threading.Lock()
        self._l2: RedisTier | None = None
        self._bus: InvalidationBus | None = None
        self._leases: Leases | None = None
        self._mlt: MltStore | None = None
        self.nodes: dict[str, Node] = {}
        self.flight = Flight()
        self.rng = random.Random(config.rng_seed)  # never the global stream: other code must not shift it
        self.holders = HolderIndex()
        self.loads = RecentLoads()
        """Until when each recently loaded key's value lives: a load before then is a repeated load."""
        self.generation = 0
        """Bumped by every local drop or flush. A reader notes it before it reads L1/L2 and fills the tiers
        above only if nothing was dropped meanwhile: a copy read before an invalidation is never put back
        after it (the invalidation may come from this process or from the bus)."""
        self._gen_lock = threading.Lock()
        self.closed = False
        self.pending = PendingInvalidations()
        """Writes and deletes that could not reach L2, replayed once it answers (see the module doc)."""
        self.replays = 0
        """Replays sent (each one L2 round trip)."""
        self.replay_generation = 0
        """The generation right after the last replayed delete landed: a read begun before it may hold what it
        deleted (see :meth:`AgentTiers.accept`)."""
        self._replay_lock = threading.Lock()
        self._replaying = False
        self._last_try = 0.0

    @property
    def l2(self) -> RedisTier:
        if self._l2 is None:
            bus = None
            with self._lock:
                if self._l2 is None:
                    self._reopen()
                    c = self.config
                    l2 = RedisTier(
                        c.redis_url,
                        namespace=c.namespace,
                        retry_s=c.tier_retry_s,
                        topology=RedisTopology.of(c),
                        wait_replicas=c.wait_replicas,
                        wait_timeout_s=c.wait_timeout_s,
                        clock=self.clock,
                    )
                    self._leases = Leases(l2, LANDED_CHANNEL)
                    if c.pubsub:
                        wait_s = max(0.05, 2 * c.redis_timeout_s)
                        bus = self._bus = InvalidationBus(
                            l2,
                            self.drop_local,
                            self.flush_local,
                            timeout_s=wait_s,
                            on_tick=self._tick,
                            transport=self.transport,
                        )
                        if self.transport is not None:
                            l2.publisher = functools.partial(self.transport.send, bus)
                    l2.on_recovered.append(self._l2_recovered)
                    self._l2 = l2
            # Waited for outside the lock: a Redis that does not answer must not hold up other users.
            if bus is not None and not bus.start():
                log.warning("Invalidation bus on %s not subscribed yet; it keeps trying", self._l2.describe())
        return self._l2

    def _reopen(self) -> None:
        """A manager used after ``close_all()`` reopens its cluster: register it again so it is closed again."""
        if self.closed:
            self.closed = False
            with _registry_lock:
                _clusters.setdefault((self.config, id(self.clock), self.name), self)
                _clocks[id(self.clock)] = self.clock

    @property
    def bus(self) -> InvalidationBus | None:
        """The pub/sub bus (``None`` with ``MW_PUBSUB=false``)."""
        _ = self.l2
        return self._bus

    @property
    def leases(self) -> Leases:
        _ = self.l2
        assert self._leases is not None
        return self._leases

    @property
    def started_bus(self) -> InvalidationBus | None:
        """The bus if L2 was opened already (telemetry reads it without opening a connection)."""
        return self._bus

    def inv_message(self, keys: list[str]) -> tuple[str, bytes] | None:
        bus = self.bus
        return None if bus is None else bus.message(keys)

    # --- changes that could not reach L2 -------------------------------------------------------------------
    def unreached(self, keys: list[str], message: tuple[str, bytes] | None, deletes: Iterable[str] = ()) -> None:
        """A write (``deletes`` empty) or delete of ``keys`` could not reach L2, or timed out and may have.

        This process's copies are dropped (what L2 holds is unknown now); the keys are invalidated in
        other processes, and ``deletes`` (L2 keys) deleted again, once L2 answers.
        """
        self.drop_local(keys)
        seq = None if message is None else InvalidationBus.seq_of(message[1])
        self.pending.add(keys if self._bus is not None else (), seq, deletes)

    def reached(self, l2_keys: list[str]) -> None:
        """A write or delete of ``l2_keys`` reached L2: nothing is pending for them, and L2 answers again."""
        if self.pending:
            self.pending.settle(l2_keys)
            self.replay_soon()
        bus = self._bus
        if bus is not None and not bus.connected:
            bus.kick()

    def _l2_recovered(self) -> None:
        bus = self._bus
        if bus is not None:
            bus.kick()
        self.replay_soon()

    def _tick(self) -> None:
        """From the bus thread, about 5 times a second: retry a replay once per retry window."""
        if self.pending and time.monotonic() - self._last_try >= max(self.config.tier_retry_s, 0.25):
            self.replay_soon()

    def replay_soon(self) -> None:
        """Send what is pending from a thread of its own (the caller may be an event loop, or inside an L2 call)."""
        if not self.pending or self.closed:
            return
        with self._replay_lock:
            if self._replaying:
                return
            self._replaying = True
        threading.Thread(target=self._replay_all, name="mw-replay", daemon=True).start()

    def _replay_all(self) -> None:
        while True:
            sent = self.replay()  # more may have become pending meanwhile: go on while it works
            with self._replay_lock:
                if not (sent and self.pending and not self.closed):
                    self._replaying = False
                    return

    def replay(self) -> bool:
        """Send everything pending in one L2 round trip; True if something was sent (or given up on).

        False when there was nothing to send, or L2 still does not answer (then everything is kept).
        """
        self._last_try = time.monotonic()
        l2 = self._l2
        batch = None if l2 is None else self.pending.take()
        if batch is None or l2 is None:
            return False
        bus = self._bus
        message = None if bus is None else bus.replay_message(batch)
        try:
            if batch.deletes:
                l2.delete(list(batch.deletes), publish=message)
                self.replay_generation = self.bump()
            elif message is not None:
                l2.publish(*message)
        except TierUnavailable as exc:
            self.pending.restore(batch, None if message is None else InvalidationBus.seq_of(message[1]))
            log.debug("Replay to %s not sent yet: %s", l2.describe(), exc)
            return False
        except Exception:  # a replay that cannot be sent as it is never will be: do not retry it forever
            self.pending.sent()
            log.exception(
                "Replay of %d keys to %s failed; dropped", len(batch.keys) + len(batch.deletes), l2.describe()
            )
            return True
        self.pending.sent()
        self.replays += 1
        log.info(
            "Replayed to %s: %d deletes, %d invalidations%s",
            l2.describe(),
            len(batch.deletes),
            len(batch.keys),
            " (as a flush)" if batch.flush else "",
        )
        return True

    @property
    def mlt(self) -> MltStore:
        if self._mlt is None:
            with self._lock:
                if self._mlt is None:
                    self._reopen()
                    self._mlt = open_store(
                        self.config.mlt_dsn, share_key=self.config.namespace, timeout_s=self.config.mlt_timeout_s
                    )
        return self._mlt

    def node(self, name: str = DEFAULT_NODE, l1: Any = None) -> Node:
        """The named node, made on first use with ``l1`` (default: an in-process :class:`L1Cache`).

        ``l1`` lets a node tier live elsewhere (the Ray node actor): anything with the methods of
        :class:`L1Cache` (``get``, ``get_async``, ``set``, ``pop``, ``clear``, ``expire_at``, ``len``).
        """
        node = self.nodes.get(name)
        if node is None:
            with self._lock:
                node = self.nodes.get(name)
                if node is None:
                    tier = l1 if l1 is not None else L1Cache.for_config(self.config, self.clock)
                    node = Node(name, tier)
                    self.nodes[name] = node
        return node

    def drop_local(self, keys: Iterable[str], *, keep: L0Cache | None = None) -> int:
        """Remove keys from every L1 and every L0 in this process (except ``keep``); return copies dropped.

        The holder index names the L0s that have each key, so the cost follows the copies, not the
        number of agents. Loads in flight for the keys are forgotten: they read the store before this drop.
        """
        keys = list(keys)
        self.bump()
        self.flight.forget(keys)
        self.loads.forget(keys)
        dropped = 0
        for node in list(self.nodes.values()):
            for key in keys:
                dropped += node.l1.pop(key)
        for key in keys:
            for l0 in self.holders.take(key):
                if l0 is keep:
                    self.holders.add(key, l0)
                else:
                    dropped += l0.pop(key) is not None
        return dropped

    def bump(self) -> int:
        with self._gen_lock:
            self.generation += 1
            return self.generation

    def flush_local(self) -> int:
        """Empty every L1 and L0 of this cluster (the bus does this when it may have missed a message),
        and forget every load in flight (any of them may have read what a missed message invalidated)."""
        self.bump()
        self.flight.forget_all()
        self.loads.clear()
        dropped = 0
        for node in list(self.nodes.values()):
            dropped += node.l1.clear()
            for l0 in list(node.l0s):
                dropped += l0.clear()
        return dropped

    def close(self) -> None:
        if self.pending and self._l2 is not None:
            self.replay()  # last chance for deletes that never reached L2 (one attempt, bounded by the timeout)
        with self._lock:
            self.closed = True
            if self._bus is not None:
                self._bus.stop()
                self._bus = None
            if self._l2 is not None:
                self._l2.close()
            if self._mlt is not None:
                self._mlt.close()
            self._l2 = self._mlt = None


_clusters: dict[tuple[MwConfig, int, str], Cluster] = {}
_clocks: dict[int, Clock] = {}
_registry_lock = threading.Lock()


def cluster_for(
    config: MwConfig,
    clock: Clock | None = None,
    *,
    name: str = DEFAULT_CLUSTER,
    transport: BusTransport | None = None,
) -> Cluster:
    """The cluster ``name`` for this configuration and clock, made on first use (with ``transport``).

    Asking for an existing open cluster with another transport is a ``ValueError``: its bus is made already.
    """
    clock = system_clock if clock is None else clock
    key = (config, id(clock), name)
    with _registry_lock:
        cluster = _clusters.get(key)
        if cluster is None or cluster.closed:
            cluster = Cluster(config, clock, name=name, transport=transport)
            _clusters[key] = cluster
            _clocks[id(clock)] = clock  # keeps the clock alive so its id is not reused while keyed
        elif transport is not None and cluster.transport is not transport:
            raise ValueError(f"cluster {name!r} exists with another bus transport ({cluster.transport!r})")
        return cluster


def live_clusters() -> list[Cluster]:
    """Every open cluster of the process (for process-wide telemetry: buses, node tiers, configurations)."""
    with _registry_lock:
        return list(_clusters.values())


def live_l0s() -> list[L0Cache]:
    """Every agent's L0 in this process (for process-wide telemetry)."""
    with _registry_lock:
        clusters = list(_clusters.values())
    return [l0 for c in clusters for node in list(c.nodes.values()) for l0 in list(node.l0s)]


def live_l1s() -> list[L1Cache]:
    """Every in-process node tier (a node tier elsewhere, such as Ray's, is not this process's memory)."""
    with _registry_lock:
        clusters = list(_clusters.values())
    return [node.l1 for c in clusters for node in list(c.nodes.values()) if isinstance(node.l1, L1Cache)]


def close_all() -> None:
    """Close every cluster of the process (pools, connections). Tests and the simulator call this."""
    with _registry_lock:
        clusters = list(_clusters.values())
        _clusters.clear()
        _clocks.clear()
    for cluster in clusters:
        cluster.close()
