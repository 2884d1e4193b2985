"""L2: the cluster-wide tier in Redis (fakeredis when no ``MW_REDIS_URL`` is set).

Values are envelopes with real Redis TTLs (``SET ... PX``). Multi-key reads are one ``MGET``. A failing
Redis must not fail the caller. Each failure is classified (:mod:`mw.tiers.l2_faults`) and answered by kind:

* unreachable (refused, reset, timeout): :class:`TierUnavailable`, and the tier stays "down" for
  ``MW_TIER_RETRY_S`` seconds of monotonic time, so a dead server costs one timeout, not one per call;
* busy (``LOADING``, ``BUSY``, ``TRYAGAIN``, ``OOM``): :class:`TierBusy`, counted in ``busy_errors``; a
  read is retried once after ``BUSY_RETRY_S``. No breaker: the reply is instant, so skipping costs
  nothing, and a breaker would also hold back the deletes that must reach Redis as soon as it serves;
* topology (``READONLY``, ``MOVED``, ``ASK``): :class:`TopologyChanged`, counted in ``topology_changes``;
  the idle pooled connections are closed so the next call reconnects (and re-resolves the host);
* permission (``NOPERM``, ``NOAUTH``, ``WRONGPASS``): :class:`TierPermissionError` naming the command,
  counted in ``permission_errors``, logged at ERROR once per command;
* one bad key or argument (``WRONGTYPE``, out of range): the tier is fine. A read (``get``, ``mget``,
  ``pttl``) is a miss counted in ``key_errors``; a write raises :class:`L2CommandError` (a ValueError).

Every command passes the fault seam (:mod:`mw.faults`) as ``l2.<op>`` before and ``l2.<op>.reply``
after, sync and async; an injected error goes through the same classification as a real one.

The sync client and the asyncio clients (one per event loop, see :mod:`mw.tiers.aio_clients`) share
the URL and, in embedded mode, one in-process fake server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mw.clock import Clock, system_clock
from mw.errors import (
    ConfigError,
    L2CommandError,
    ReplicationUnconfirmed,
    TierBusy,
    TierPermissionError,
    TierUnavailable,
    TopologyChanged,
)
from mw.faults import INJECTORS, apoint, point
from mw.observe import OBSERVERS, emit
from mw.secrets import mask_secrets
from mw.tiers.aio_clients import LoopClients
from mw.tiers.embedded import EMBEDDED_ATOMIC, embedded_aclient, embedded_client, embedded_server
from mw.tiers.l2_faults import Fault, classify, errors, reply_text
from mw.tiers.slots import by_slot, tagged, untagged
from mw.tiers.topology import RedisTopology

__all__ = [
    "BUSY_RETRY_S",
    "EMBEDDED_ATOMIC",
    "LuaScript",
    "RedisTier",
    "TierUnavailable",
    "embedded_client",
    "embedded_server",
    "pipeline",
]

log = logging.getLogger("mw.l2")

BUSY_RETRY_S = 0.02
"""Pause before the one retry of a read that got a busy reply (long enough for a TRYAGAIN to clear)."""

_COMMANDS = {
    "l2.get": "GET",
    "l2.mget": "MGET",
    "l2.set": "SET",
    "l2.set_nx": "SET NX",
    "l2.delete": "DEL",
    "l2.script": "EVALSHA",
    "l2.publish": "PUBLISH",
    "l2.pttl": "PTTL",
    "l2.scan": "SCAN",
}

_RAISE: Any = object()
"""``miss=`` of a write: a command error raises instead of being a miss."""

Command = Callable[[Any], Any]
"""A call on a client: ``lambda client: client.get(k)`` (sync) or returning an awaitable (async)."""


class _Serial:
    """The embedded stand-in for a non-transactional pipeline: the queued commands, one after another.

    fakeredis runs a pipeline's commands one by one anyway (each under its server lock, as these are), so the
    order and what another client can see between them are the same; only redis-py's pipeline machinery (a
    quarter more CPU than a fill's three commands sent one by one) is left out. As a pipeline does, it runs every
    command and then raises the first command error (a lost connection stops it at once).
    """

    __slots__ = ("_client", "_queued")

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def delete(self, *names: str) -> _Serial:
        self._queued.append(("delete", names, {}))
        return self

    def set(self, name: str, value: bytes | None, px: int | None = None) -> _Serial:
        self._queued.append(("set", (name, value), {"px": px}))
        return self

    def publish(self, channel: str, message: bytes | str) -> _Serial:
        self._queued.append(("publish", (channel, message), {}))
        return self

    def execute(self) -> list[Any]:
        import redis

        client, results, failed = self._client, [], None
        for name, args, kwargs in self._queued:
            try:
                results.append(getattr(client, name)(*args, **kwargs))
            except redis.ResponseError as exc:
                results.append(exc)
                failed = failed or exc
        self._queued = []
        if failed is not None:
            raise failed
        return results


def pipeline(client: Any, embedded: bool, transaction: bool = True) -> Any:
    """``client.pipeline(transaction=...)``, or in embedded mode the serial stand-in (see :class:`_Serial`)."""
    return _Serial(client) if embedded else client.pipeline(transaction=transaction)


@dataclass(frozen=True)
class LuaScript:
    """A Lua script by source and SHA-1, bound to no client: any loop's client can run it (``EVALSHA``)."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


def _named(keys: Sequence[str]) -> str:
    if len(keys) == 1:
        return repr(keys[0])
    return f"{keys[0]!r} and {len(keys) - 1} more" if keys else "no key"


class RedisTier:
    """The L2 tier on one Redis topology; embedded (no URL), the fake server's TTLs run on ``clock``."""

    def __init__(
        self,
        url: str | None,
        *,
        namespace: str = "",
        timeout_s: float = 0.5,
        connect_timeout_s: float | None = None,
        retry_s: float = 1.0,
        tls: Mapping[str, str] | None = None,
        topology: RedisTopology | None = None,
        wait_replicas: int = 0,
        wait_timeout_s: float = 0.1,
        clock: Clock = system_clock,
    ) -> None:
        import redis

        if topology is None:
            connect_s = timeout_s if connect_timeout_s is None else connect_timeout_s
            topology = RedisTopology(url, timeout_s=timeout_s, connect_timeout_s=connect_s, tls=dict(tls or {}))
        self.topology = topology
        self.url = topology.url
        self.embedded = topology.url is None and topology.kind == "standalone"
        self.slotted = topology.slotted
        """A Redis Cluster: each item's keys are hash-tagged into one slot (:mod:`mw.tiers.slots`)."""
        if self.slotted and ("{" in namespace or "}" in namespace):
            raise ConfigError("MW_NAMESPACE", namespace, "may hold no brace on a cluster (hash tags)")
        self.wait_replicas = 0 if self.embedded or self.slotted else wait_replicas
        """Replicas that must confirm a write or delete carrying an invalidation (``WAIT``), else it is
        :class:`ReplicationUnconfirmed` (see :meth:`_durable`). Not on a cluster or the embedded server."""
        self._wait_ms = max(1, round(wait_timeout_s * 1000))
        self.unconfirmed = 0
        """Changes fewer than ``wait_replicas`` replicas confirmed in time."""
        self.atomic: Any = EMBEDDED_ATOMIC if self.embedded else contextlib.nullcontext()
        self.prefix = f"{namespace}:" if namespace else ""
        self._retry_s = retry_s
        self._down_until = 0.0
        self.publisher: Callable[[str, bytes], None] | None = None
        """Set: messages (``publish=`` of a write or delete, :meth:`publish`) are handed to it, with the logical
        channel, once Redis took the command, instead of ``PUBLISH`` (a bus transport, see :mod:`mw.invalidation`)."""
        self.on_recovered: list[Any] = []
        """Called (no arguments) by the first call that succeeds after the tier was marked down."""
        self.key_errors = 0
        """Commands Redis refused on one key (``WRONGTYPE``, out-of-range argument): read misses and write errors."""
        self.busy_errors = 0
        """Busy replies (``LOADING``, ``BUSY``, ``TRYAGAIN``, ``OOM``), retries included."""
        self.topology_changes = 0
        """``READONLY``/``MOVED``/``ASK`` replies; each dropped the idle pooled connections."""
        self.permission_errors = 0
        """``NOPERM``/``NOAUTH``/``WRONGPASS`` replies."""
        self._busy_warned = False
        self._permission_logged: set[str] = set()
        self._errors = errors()
        self._noscript: type[BaseException] = redis.exceptions.NoScriptError
        self._server: Any = None
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._seeds: list[tuple[str, int]] = []
        """Cluster nodes its clients have seen: a new client (a new event loop's) asks them besides the URL's."""
        self._learned: weakref.WeakSet[Any] = weakref.WeakSet()
        """The asyncio cluster clients that have read their slot map (and whose nodes are in ``_seeds``)."""
        self._clock = clock
        if self.embedded:
            self._server = embedded_server()
            self._client = embedded_client(self._server, clock)
        self._aclients = LoopClients(self._new_aclient)

    @property
    def client(self) -> Any:
        """The sync client, made on first use: a cluster client connects when it is made (to read the slot map),
        and a cluster that is down then must cost the caller a miss, not an exception from a constructor."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    @client.setter
    def client(self, client: Any) -> None:
        """Hand the tier its sync client (a harness driving a model of Redis, as tests/explore does)."""
        self._client = client

    def _connect(self) -> Any:
        import redis

        try:
            client = self.topology.client(self._seeds)
        except redis.exceptions.RedisClusterException as exc:  # "cannot be connected": no node answered
            raise redis.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if self.slotted:
            self._learn(client)
        return client

    def _learn(self, client: Any) -> None:
        """Remember a cluster client's nodes (a bounded list: a cluster's own size)."""
        with contextlib.suppress(Exception):
            self._seeds = sorted({(node.host, node.port) for node in client.get_nodes()})

    # --- helpers -------------------------------------------------------------------------------------
    def phys(self, key: str) -> str:
        """The Redis key of a logical key: the namespace (if any) in front; on a cluster, the item's hash tag."""
        return self.prefix + (tagged(key) if self.slotted else key)

    def logical(self, phys_key: str | bytes) -> str:
        text = phys_key.decode() if isinstance(phys_key, bytes) else phys_key
        rest = text[len(self.prefix) :]
        return untagged(rest) if self.slotted else rest

    def channel(self, name: str) -> str:
        """The Redis name of a pub/sub channel: the namespace in front (channels have no slot to share)."""
        return self.prefix + name

    def _check_up(self) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise TierUnavailable(f"L2 {self.describe()} is marked down after a failure")

    def _failed(self, exc: BaseException) -> TierUnavailable:
        was_up = not self._down_until
        self._down_until = time.monotonic() + self._retry_s
        # Once per outage at WARNING: with a short retry window every call of an outage fails again.
        log.log(
            logging.WARNING if was_up else logging.DEBUG,
            "L2 %s failed: %s: %s (skipping L2 for %.1fs)",
            self.describe(),
            type(exc).__name__,
            exc,
            self._retry_s,
        )
        return TierUnavailable(mask_secrets(f"L2 {self.describe()}: {type(exc).__name__}: {exc}"))

    def _ok(self) -> None:
        if self._busy_warned:
            self._busy_warned = False
        if self._down_until:
            self._down_until = 0.0
            for callback in list(self.on_recovered):
                callback()

    def describe(self) -> str:
        """The server's name in messages and logs: its URL with the password masked."""
        return "fakeredis (embedded)" if self.embedded else mask_secrets(self.topology.describe())

    def _new_aclient(self) -> Any:
        if self._server is not None:
            return embedded_aclient(self._server, self._clock)
        return self.topology.aclient(self._seeds)

    def subscriber(self, attempt: int = 0) -> Any:
        """A client for the bus's subscription (see :meth:`RedisTopology.subscriber`); embedded: the client."""
        return self.client if self.embedded else self.topology.subscriber(self.client, attempt)

    def aclient(self) -> Any:
        """The asyncio client for the running loop (closed when that loop shuts down)."""
        return self._aclients.get()

    @property
    def loop_clients(self) -> int:
        """How many per-loop asyncio clients are open."""
        return len(self._aclients)

    # --- classified calls ----------------------------------------------------------------------------
    def _drop(self) -> None:
        """Close the idle pooled connections (in use ones are left to their callers): the next call reconnects.

        The embedded client's one connection is closed too (under its lock, so not in a command's middle)."""
        if self._client is None:
            return
        with contextlib.suppress(*self._errors):
            if self.slotted:  # a cluster client keeps a pool per node
                for node in self.client.get_nodes():
                    node.redis_connection.connection_pool.disconnect(inuse_connections=False)
                return
            self.client.connection_pool.disconnect(inuse_connections=False)
            single = getattr(self.client, "connection", None)
            if single is not None:
                with self.client.single_connection_lock:
                    single.disconnect()

    async def _adrop(self, client: Any) -> None:
        with contextlib.suppress(*self._errors):
            if self.slotted:
                for node in client.get_nodes():
                    await node.disconnect_free_connections()
                return
            await client.connection_pool.disconnect(inuse_connections=False)

    def _call(self, op: str, keys: Sequence[str], command: Command, miss: Any = _RAISE) -> Any:
        """Run ``command(client)``; ``miss`` is what a read answers for a bad key (writes raise instead)."""
        self._check_up()
        key = keys[0] if keys else None
        retry = miss is not _RAISE
        while True:
            try:
                if INJECTORS:
                    point(op, key, drop=self._drop)
                result = command(self.client)
                if INJECTORS:
                    point(f"{op}.reply", key, drop=self._drop)
            except self._errors as exc:
                fault = classify(exc)
                if fault is Fault.BUSY and retry:
                    retry = False
                    self.busy_errors += 1
                    time.sleep(BUSY_RETRY_S)
                    continue
                if fault is Fault.TOPOLOGY:
                    self._drop()
                return self._fault(op, keys, exc, fault, miss)
            self._ok()
            return result

    async def _acall(self, op: str, keys: Sequence[str], command: Command, miss: Any = _RAISE) -> Any:
        """The asyncio twin of :meth:`_call`, on the running loop's client."""
        self._check_up()
        client = self.aclient()
        key = keys[0] if keys else None
        retry = miss is not _RAISE
        while True:
            try:
                if self.slotted:
                    await self._ainitialize(client)
                if INJECTORS:
                    await self._apoint(op, key, client)
                result = await command(client)
                if INJECTORS:
                    await self._apoint(f"{op}.reply", key, client)
            except self._errors as exc:
                fault = classify(exc)
                if fault is Fault.BUSY and retry:
                    retry = False
                    self.busy_errors += 1
                    await asyncio.sleep(BUSY_RETRY_S)
                    continue
                if fault is Fault.TOPOLOGY:
                    await self._adrop(client)
                return self._fault(op, keys, exc, fault, miss)
            self._ok()
            return result

    async def _ainitialize(self, client: Any) -> None:
        """Read the slot map before a client's first command: a transaction as the asyncio cluster client's first
        command leaves a node the client never closes (redis-py 8.1: ResourceWarning). Once read, the client
        refreshes it itself, so later commands skip this."""
        import redis

        if client in self._learned:
            return
        try:
            await client.initialize()
        except redis.exceptions.RedisClusterException as exc:  # no node answered
            raise redis.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        self._learned.add(client)
        self._learn(client)

    async def _apoint(self, name: str, key: str | None, client: Any) -> None:
        dropped: list[bool] = []
        try:
            await apoint(name, key, drop=lambda: dropped.append(True))
        finally:
            if dropped:  # the pool's disconnect is a coroutine: run it here, not in the seam
                await self._adrop(client)

    def _fault(self, op: str, keys: Sequence[str], exc: BaseException, fault: Fault, miss: Any) -> Any:
        """Count and report a classified failure: return ``miss`` (a read's bad key) or raise."""
        if fault is Fault.UNAVAILABLE:
            raise self._failed(exc) from exc
        command, named, reply = _COMMANDS.get(op, op), _named(keys), reply_text(exc)
        where = f"L2 {self.describe()}"
        if fault is Fault.BUSY:
            self.busy_errors += 1
            if not self._busy_warned:
                self._busy_warned = True
                log.warning("%s is busy (%s); skipping it until it serves again (not marked down)", where, reply)
            raise TierBusy(f"{where}: {command} on {named}: {reply}") from exc
        if fault is Fault.TOPOLOGY:
            self.topology_changes += 1
            log.warning("%s: %s on %s: %s (reconnecting on the next call)", where, command, named, reply)
            raise TopologyChanged(f"{where}: {command} on {named}: {reply}") from exc
        if fault is Fault.PERMISSION:
            self.permission_errors += 1
            message = (
                f"{where} refused {command} on {named} for the configured user: {type(exc).__name__}: {reply} "
                "(grant the command with ACL SETUSER, or fix the credentials in MW_REDIS_URL)"
            )
            if command not in self._permission_logged:
                self._permission_logged.add(command)
                log.error("%s", message)
            raise TierPermissionError(message) from exc
        self._ok()  # Redis answered: the server is fine, this key or argument is not
        self.key_errors += 1
        if miss is _RAISE:
            raise L2CommandError(f"{where} refused {command} on key {named}: {reply}") from exc
        log.warning("%s refused %s on key %s: %s (counted as a miss)", where, command, named, reply)
        return miss

    @staticmethod
    def _seen(op: str, keys: Sequence[str]) -> None:
        if OBSERVERS:
            for key in keys:
                emit(op, "L2", key)

    def _eval(self, client: Any, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        phys = [self.phys(k) for k in keys]
        try:
            return client.evalsha(script.sha, len(phys), *phys, *args)
        except self._noscript:
            return client.eval(script.source, len(phys), *phys, *args)

    async def _aeval(self, client: Any, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        phys = [self.phys(k) for k in keys]
        try:
            return await client.evalsha(script.sha, len(phys), *phys, *args)
        except self._noscript:
            return await client.eval(script.source, len(phys), *phys, *args)

    # --- sync ----------------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        self._seen("read", (key,))
        phys = self.phys(key)
        return self._call("l2.get", (key,), lambda c: c.get(phys), miss=None)  # type: ignore[no-any-return]

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self._seen("read", keys)
        if not keys:
            return []
        phys = [self.phys(k) for k in keys]
        return list(self._call("l2.mget", keys, lambda c: self._mget(c, phys), miss=[None] * len(keys)))

    def _mget(self, client: Any, phys: list[str]) -> Any:
        """One ``MGET``; on a cluster one per slot, pipelined per node (redis-py's ``mget_nonatomic``)."""
        return client.mget_nonatomic(phys) if self.slotted else client.mget(phys)

    def set(
        self, key: str, data: bytes, ttl_ms: int, clear: Sequence[str] = (), publish: tuple[str, bytes] | None = None
    ) -> None:
        """``SET key data PX ttl``, delete ``clear`` keys and publish a message, in one round trip."""
        self._seen("write", (key,))
        self._seen("delete", clear)
        with self.atomic:
            self._call(
                "l2.set",
                (key,),
                lambda c: self._sent(c, self._pipeline(c, key, data, ttl_ms, clear, (), publish), publish),
            )

    def _sent(self, client: Any, pipe: Any, publish: tuple[str, bytes] | None) -> Any:
        """Execute ``pipe``; then hand its message to the publisher, if one carries messages instead of Redis.

        On a cluster the message is a ``PUBLISH`` of its own after the pipeline (a cluster transaction may hold
        only one slot's keys, and redis-py refuses ``PUBLISH`` in a cluster pipeline): if it fails, the write
        counts as unreached and its invalidation is replayed, as for any write L2 may or may not have taken.
        """
        results = self._confirmed(pipe, pipe.execute())
        if publish is not None:
            if self.publisher is not None:
                self.publisher(*publish)
            elif self.slotted:
                client.publish(self.channel(publish[0]), publish[1])
        return results

    async def _asent(self, client: Any, pipe: Any, publish: tuple[str, bytes] | None) -> Any:
        results = self._confirmed(pipe, await pipe.execute())
        if publish is not None:
            if self.publisher is not None:
                self.publisher(*publish)
            elif self.slotted:
                await client.publish(self.channel(publish[0]), publish[1])
        return results

    def _durable(self, client: Any) -> Any:
        """A pipeline sending ``MULTI``, the queued commands, ``EXEC`` and ``WAIT n timeout`` on one connection.

        ``WAIT`` counts the replicas that have every write *of its connection*, so it must follow the transaction
        on the connection that sent it: redis-py's transaction pipeline ends at ``EXEC`` and gives its connection
        back, hence the transaction spelled out in a plain pipeline (queued commands answer ``QUEUED``; the real
        replies are ``EXEC``'s). Marked so :meth:`_confirmed` knows to unwrap it.
        """
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("MULTI")
        pipe.mw_wait = True
        return pipe

    def _confirmed(self, pipe: Any, results: list[Any]) -> list[Any]:
        """The replies of the pipeline's commands; for a :meth:`_durable` one, ``EXEC``'s, and the replicas checked."""
        if not getattr(pipe, "mw_wait", False):
            return results
        replies, acked = results[-2], int(results[-1])
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        if acked < self.wait_replicas:
            self.unconfirmed += 1
            raise ReplicationUnconfirmed(
                f"L2 {self.describe()}: {acked} of {self.wait_replicas} replicas confirmed the change within "
                f"{self._wait_ms} ms (a failover could lose it: replayed)"
            )
        return list(replies)

    def _pipeline(
        self,
        client: Any,
        key: str | None,
        data: bytes | None,
        ttl_ms: int,
        clear: Sequence[str],
        delete: Sequence[str],
        publish: tuple[str, bytes] | None,
    ) -> Any:
        # Deletes first, atomically (MULTI/EXEC; embedded: under EMBEDDED_ATOMIC already): a lease fill
        # cannot land between taking a lease away and the write.
        durable = self.wait_replicas > 0 and (publish is not None or bool(delete))
        pipe = self._durable(client) if durable else pipeline(client, self.embedded)
        if clear:
            pipe.delete(*[self.phys(k) for k in clear])
        if delete:
            pipe.delete(*[self.phys(k) for k in delete])
        if key is not None:
            pipe.set(self.phys(key), data, px=ttl_ms)
        if publish is not None and self.publisher is None and not self.slotted:
            pipe.publish(self.channel(publish[0]), publish[1])
        if durable:
            pipe.execute_command("EXEC")
            pipe.execute_command("WAIT", self.wait_replicas, self._wait_ms)
        return pipe

    def _deletes(
        self, client: Any, keys: Sequence[str], also: Sequence[str], publish: tuple[str, bytes] | None
    ) -> tuple[Any, list[bool]]:
        """A delete's pipeline, and which of its results count deleted ``keys`` (``also`` is not counted).

        On a cluster: per slot, one ``DEL`` of that slot's ``also`` keys then one of its ``keys``, in one
        non-transactional cluster pipeline (one round trip per node). Every item's keys share a slot, so each
        item's markers and lease still go before its value; only items in different slots are no longer atomic
        with each other, which nothing relies on. (``execute_command``: redis-py's cluster pipeline refuses a
        multi-key ``delete()`` even when the keys share a slot.)"""
        if not self.slotted:
            pipe = self._pipeline(client, None, None, 0, also, keys, publish)
            return pipe, [False, True] if also else [True]
        pipe, counted = client.pipeline(transaction=False), []
        phys_also, phys_keys = [self.phys(k) for k in also], [self.phys(k) for k in keys]
        also_by_slot = by_slot(phys_also)
        for slot, positions in by_slot(phys_keys).items():
            before = also_by_slot.pop(slot, [])
            if before:
                pipe.execute_command("DEL", *[phys_also[i] for i in before])
                counted.append(False)
            pipe.execute_command("DEL", *[phys_keys[i] for i in positions])
            counted.append(True)
        for positions in also_by_slot.values():
            pipe.execute_command("DEL", *[phys_also[i] for i in positions])
            counted.append(False)
        return pipe, counted

    @staticmethod
    def _count(results: Sequence[Any], counted: Sequence[bool]) -> int:
        return sum(int(r) for r, c in zip(results, counted, strict=False) if c)  # a PUBLISH's result may follow

    def delete(self, keys: Sequence[str], publish: tuple[str, bytes] | None = None, also: Sequence[str] = ()) -> int:
        """Delete keys (and publish a message in the same round trip); return how many existed.

        ``also``: keys deleted first in the same atomic round trip (leases, markers), not counted.
        """
        self._seen("delete", (*keys, *also))
        if not keys:
            return 0
        counted: list[bool] = []

        def command(c: Any) -> Any:
            pipe, counted[:] = self._deletes(c, keys, also, publish)
            return self._sent(c, pipe, publish)

        with self.atomic:
            results = self._call("l2.delete", keys, command)
        return self._count(results, counted)

    def publish(self, channel: str, message: bytes) -> None:
        publisher = self.publisher
        if publisher is not None:
            self._call("l2.publish", (channel,), lambda _c: publisher(channel, message))
            return
        name = self.channel(channel)
        self._call("l2.publish", (channel,), lambda c: c.publish(name, message))

    def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script with logical keys (``EVALSHA``, loading the script if the server lacks it)."""
        return self._call("l2.script", keys, lambda c: self._eval(c, script, keys, args))

    def set_nx(self, key: str, data: bytes, ttl_ms: int) -> bool:
        self._seen("write", (key,))
        phys = self.phys(key)
        return bool(self._call("l2.set_nx", (key,), lambda c: c.set(phys, data, px=ttl_ms, nx=True)))

    def pttl(self, key: str) -> int:
        """Remaining TTL in ms as Redis reports it (-2 missing, -1 no expiry); a refused key reads as missing."""
        phys = self.phys(key)
        return int(self._call("l2.pttl", (key,), lambda c: c.pttl(phys), miss=-2))

    def scan_keys(self, match: str = "*", count: int = 500) -> list[str]:
        """Logical keys matching the glob ``match``. On a cluster every primary's keys under the namespace are
        scanned and matched after untagging (a tagged pattern would miss the markers: ``mw:neg:{...}``)."""
        pattern = self.prefix + "*" if self.slotted else self.phys(match)
        found = self._call("l2.scan", (match,), lambda c: list(c.scan_iter(match=pattern, count=count)))
        keys = [self.logical(k) for k in found]
        return [k for k in keys if fnmatch.fnmatchcase(k, match)] if self.slotted else keys

    # --- async ---------------------------------------------------------------------------------------
    async def get_async(self, key: str) -> bytes | None:
        self._seen("read", (key,))
        phys = self.phys(key)
        return await self._acall("l2.get", (key,), lambda c: c.get(phys), miss=None)  # type: ignore[no-any-return]

    async def mget_async(self, keys: Sequence[str]) -> list[bytes | None]:
        self._seen("read", keys)
        if not keys:
            return []
        phys = [self.phys(k) for k in keys]
        return list(await self._acall("l2.mget", keys, lambda c: self._mget(c, phys), miss=[None] * len(keys)))

    async def set_async(
        self, key: str, data: bytes, ttl_ms: int, clear: Sequence[str] = (), publish: tuple[str, bytes] | None = None
    ) -> None:
        if self.embedded:  # in-memory: the sync path does no I/O and keeps the embedded atomicity
            return self.set(key, data, ttl_ms, clear, publish)
        self._seen("write", (key,))
        self._seen("delete", clear)

        def command(c: Any) -> Awaitable[Any]:
            return self._asent(c, self._pipeline(c, key, data, ttl_ms, clear, (), publish), publish)

        await self._acall("l2.set", (key,), command)

    async def delete_async(
        self, keys: Sequence[str], publish: tuple[str, bytes] | None = None, also: Sequence[str] = ()
    ) -> int:
        if self.embedded:
            return self.delete(keys, publish, also)
        self._seen("delete", (*keys, *also))
        if not keys:
            return 0

        counted: list[bool] = []

        def command(c: Any) -> Awaitable[Any]:
            pipe, counted[:] = self._deletes(c, keys, also, publish)
            return self._asent(c, pipe, publish)

        results = await self._acall("l2.delete", keys, command)
        return self._count(results, counted)

    async def set_nx_async(self, key: str, data: bytes, ttl_ms: int) -> bool:
        self._seen("write", (key,))
        phys = self.phys(key)
        return bool(await self._acall("l2.set_nx", (key,), lambda c: c.set(phys, data, px=ttl_ms, nx=True)))

    async def run_async(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._acall("l2.script", keys, lambda c: self._aeval(c, script, keys, args))

    async def aclose(self) -> None:
        """Close the running loop's asyncio client now (it is also closed when the loop shuts down)."""
        await self._aclients.aclose_current()

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            if self._client is not None:
                self._client.close()
        self._aclients.close()
