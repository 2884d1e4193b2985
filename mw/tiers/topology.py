"""Where L2 lives: one Redis server, a Redis Cluster, or the primary a Sentinel group names.

:class:`RedisTopology` makes the L2 tier's clients (sync, per-loop asyncio, and the bus subscriber's) and knows
nothing of caching; :class:`mw.tiers.l2.RedisTier` asks it for clients and, on a cluster, maps each item's keys
into one hash slot (:mod:`mw.tiers.slots`). The three kinds:

* ``standalone``: ``redis.Redis.from_url(MW_REDIS_URL)``;
* ``cluster`` (``MW_REDIS_CLUSTER=true``): redis-py's ``RedisCluster`` from any node's URL, sync and asyncio
  (redis-py 5.0.1 or later, whose asyncio cluster pipeline runs ``MULTI``/``EXEC``). It follows ``MOVED``/``ASK``
  and a primary failover itself, refreshing its slot map. The bus subscriber is a plain connection to one
  primary: classic ``PUBLISH`` is broadcast over the cluster bus to every node, so one subscription hears every
  shard's messages; a subscriber that loses its node moves to another (and flushes, as after any reconnect);
* ``sentinel`` (``MW_REDIS_SENTINELS`` + ``MW_REDIS_SENTINEL_MASTER``): redis-py's ``Sentinel.master_for``, whose
  connections ask the sentinels for the primary each time they connect, so a failover costs a reconnect. User,
  password and database come from ``MW_REDIS_URL`` if it is set (its host is not used).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from mw.config import MwConfig

__all__ = ["RedisTopology", "TopologyKind"]

TopologyKind = Literal["standalone", "cluster", "sentinel"]


def _tls_connection(url: str) -> dict[str, Any]:
    """On ``rediss://``, the sync connection class whose handshake gets the connect deadline (:mod:`mw.tiers.tls`)."""
    if not url.startswith("rediss://"):
        return {}
    from mw.tiers.tls import HandshakeDeadlineSSLConnection

    return {"connection_class": HandshakeDeadlineSSLConnection}


def _credentials(url: str, *, with_db: bool) -> dict[str, Any]:
    """``username``, ``password`` (percent-decoded) and, if asked, ``db`` of a Redis URL, where it has them."""
    parts = urlsplit(url)
    found: dict[str, Any] = {}
    if parts.username:
        found["username"] = unquote(parts.username)
    if parts.password:
        found["password"] = unquote(parts.password)
    db = parts.path.strip("/")
    if with_db and db.isdigit():
        found["db"] = int(db)
    return found


def _no_backoff(asyncio_client: bool, *, retries: int) -> Any:
    """redis-py's retry policy without sleeps between tries (sync and asyncio clients take different classes)."""
    import redis.asyncio.retry
    import redis.retry
    from redis.backoff import NoBackoff

    return (redis.asyncio.retry.Retry if asyncio_client else redis.retry.Retry)(NoBackoff(), retries)


@dataclass(frozen=True)
class RedisTopology:
    """How to reach L2 (``url`` ``None``: nowhere, the embedded fake server is used instead)."""

    url: str | None
    kind: TopologyKind = "standalone"
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    timeout_s: float = 0.5
    connect_timeout_s: float = 0.5
    tls: Mapping[str, str] = field(default_factory=dict)
    """redis-py's ``ssl_*`` arguments (CA, client certificate and key) for a ``rediss://`` URL."""

    @classmethod
    def of(cls, config: MwConfig) -> RedisTopology:
        """The topology ``config`` describes (``MW_REDIS_CLUSTER``, ``MW_REDIS_SENTINELS``, else one server)."""
        kind: TopologyKind = "standalone"
        if config.redis_cluster:
            kind = "cluster"
        elif config.redis_sentinels:
            kind = "sentinel"
        return cls(
            config.redis_url,
            kind,
            config.sentinel_hosts,
            config.redis_sentinel_master,
            config.redis_timeout_s,
            config.connect_timeout_s,
            config.redis_tls(),
        )

    @property
    def slotted(self) -> bool:
        """Keys are sharded by hash slot: every item's keys must share one (see :mod:`mw.tiers.slots`)."""
        return self.kind == "cluster"

    def _timeouts(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout_s or None,
            "socket_connect_timeout": self.connect_timeout_s or None,
        }

    def _credentials(self) -> dict[str, Any]:
        """User, password and database of ``url`` for the Sentinel group's primary (its host is the sentinels')."""
        return _credentials(self.url, with_db=True) if self.url else {}

    def _options(self) -> dict[str, Any]:
        """Deadlines and TLS files, as every client of this topology takes them."""
        return {**self._timeouts(), **self.tls}

    def _cluster_options(self, asyncio_client: bool) -> dict[str, Any]:
        """A cluster client's options: no backoff between its retries of a failed node (redis-py's default slept
        about 4 s in a write's transaction to a dead primary: a dead server must cost one deadline). Redirects
        (``MOVED``/``ASK``) are followed as before; one immediate retry reads the refreshed slot map."""
        return {"retry": _no_backoff(asyncio_client, retries=1), **self._options()}

    def _sentinel(self, module: Any) -> Any:
        """The Sentinel group's client; neither its questions to the sentinels nor the primary's connections retry
        with backoff (redis-py's default: 3 tries, about 4.5 s before a dead group is an error), so an unreachable
        group costs one connect deadline per sentinel, as an unreachable server does."""
        once = {"retry": _no_backoff(module.__name__.startswith("redis.asyncio"), retries=0), **self._timeouts()}
        return module.Sentinel(list(self.sentinels), sentinel_kwargs=once, **once)

    def client(self, seeds: Sequence[tuple[str, int]] = ()) -> Any:
        """The sync client (its pool is shared by every thread of the process).

        ``seeds``: on a cluster, nodes known from an earlier client, asked besides the URL's for the slot map (the
        URL's node may be the one that died)."""
        import redis

        if self.kind == "cluster":
            from redis.cluster import ClusterNode, RedisCluster

            node: Any = ClusterNode  # untyped in redis-py
            nodes = [node(host, port) for host, port in seeds]
            return RedisCluster.from_url(str(self.url), startup_nodes=nodes, **self._cluster_options(False))
        if self.kind == "sentinel":
            import redis.sentinel

            return self._sentinel(redis.sentinel).master_for(str(self.master), **self._credentials())
        url = str(self.url)
        return redis.Redis.from_url(url, health_check_interval=30, **self._options(), **_tls_connection(url))

    def aclient(self, seeds: Sequence[tuple[str, int]] = ()) -> Any:
        """A new asyncio client (one per event loop: see :mod:`mw.tiers.aio_clients`); ``seeds`` as for
        :meth:`client`."""
        if self.kind == "cluster":
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            node: Any = ClusterNode  # untyped in redis-py
            nodes = [node(host, port) for host, port in seeds]
            return RedisCluster.from_url(str(self.url), startup_nodes=nodes, **self._cluster_options(True))
        if self.kind == "sentinel":
            import redis.asyncio.sentinel

            group = self._sentinel(redis.asyncio.sentinel)
            return _ClosesSentinels(group.master_for(str(self.master), **self._credentials()), group)
        import redis.asyncio

        return redis.asyncio.Redis.from_url(str(self.url), **self._options())

    def subscriber(self, client: Any, attempt: int) -> Any:
        """A client for the bus's pub/sub connection, on the ``attempt``-th try since the last success.

        On a cluster each attempt takes the next primary the sync ``client`` knows (a dead node's successor is
        found once the cluster client refreshes its map); elsewhere it is ``client`` itself.
        """
        if self.kind != "cluster":
            return client
        import redis

        primaries = sorted((node.host, node.port) for node in client.get_primaries())
        if not primaries:
            client.nodes_manager.initialize()
            primaries = sorted((node.host, node.port) for node in client.get_primaries())
        host, port = next(itertools.islice(itertools.cycle(primaries), attempt, None))
        options = {**_credentials(str(self.url), with_db=False), **self._options()}
        if str(self.url).startswith("rediss://"):
            options["ssl"] = True
        return redis.Redis(host=host, port=port, **options)

    def describe(self) -> str:
        """The topology in messages (unmasked: callers mask)."""
        if self.kind == "sentinel":
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel master {self.master} via {hosts}"
        if self.kind == "cluster":
            return f"cluster via {self.url}"
        return str(self.url)


class _ClosesSentinels:
    """An asyncio primary client whose ``aclose`` also closes the connections to the sentinels it asked.

    redis-py's ``master_for`` client closes only its own pool; the ``Sentinel``'s clients stay open until the garbage
    collector finds them, after their loop has closed (``ResourceWarning``). Everything else is the client's.
    """

    def __init__(self, client: Any, group: Any) -> None:
        self._client = client
        self._group = group

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def aclose(self) -> None:
        clients = [self._client, *self._group.sentinels]
        failed: BaseException | None = None
        for client in clients:  # each one, whatever another raised
            try:
                await client.aclose()
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
