"""Per-test cleanliness that is safe on a shared server, and URL/DSN strings that never print their password.

Redis: each test gets a unique key namespace and only keys under it are deleted (never FLUSHALL/FLUSHDB, which would
wipe someone else's data, cf. pytest-redis #571). PostgreSQL: each test gets a fresh database, dropped afterwards.

The fixtures hand out ``RedisURL`` / ``PostgresDSN``: plain ``str`` values to every client (``redis.from_url``,
``psycopg.connect``, f-strings), whose ``repr`` masks the password, so a failing assertion, ``--showlocals`` or a
traceback never shows it.
"""

from __future__ import annotations

import re
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pytest_mw.servers.readiness import mask

if TYPE_CHECKING:
    import redis

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_UNLINK_BATCH = 500


def unique_namespace(prefix: str = "mwt") -> str:
    """A namespace no other test (or xdist worker) will use, e.g. ``mwt:3f2a...``: keys are ``{namespace}:{key}``.

    The same form as ``MwConfig.namespace``, so a test's raw keys and its Mw keys share one prefix.
    """
    return f"{prefix}:{uuid.uuid4().hex}"


def new_namespace(prefix: str = "mwt") -> str:
    """A key prefix (namespace plus ``:``) no other test will use, e.g. ``mwt:3f2a...:``, for ``RedisNamespace``."""
    return unique_namespace(prefix) + ":"


class SecretURL(str):
    """A URL or DSN that is the real string to every client, but whose ``repr`` hides the password."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask(str(self))!r})"


class PostgresDSN(SecretURL):
    """The DSN of a test's own database (``mw_postgres_dsn``); ``dbname`` names it."""

    @property
    def dbname(self) -> str:
        """The database this DSN connects to."""
        if "://" in self:
            return unquote(urlsplit(self).path.lstrip("/"))
        from psycopg.conninfo import conninfo_to_dict

        return str(conninfo_to_dict(str(self)).get("dbname", ""))


_DEPRECATED = (
    "mw_redis_url is a str (the URL) since pytest-mw 0.2: use it as the URL, mw_namespace for the key prefix "
    "(keys are f'{{mw_namespace}}:{{name}}') and mw_redis for a client; RedisURL.{name} goes in a later release"
)


class RedisURL(SecretURL):
    """The URL of the test's Redis (``mw_redis_url``), a ``str``; the test's keys live under ``mw_namespace``.

    ``.url``, ``.namespace``, ``.key()`` and ``.client()`` are the 0.1 ``RedisNamespace`` API, kept for one release
    with a ``DeprecationWarning``; ``.namespace`` keeps its old trailing ``:``.
    """

    _janitor: RedisNamespace | None = None

    @classmethod
    def on(cls, url: str, janitor: RedisNamespace) -> RedisURL:
        """``url`` whose deprecated helpers go through ``janitor`` (the fixture's cleanup of the namespace)."""
        made = cls(url)
        made._janitor = janitor
        return made

    def _old(self, name: str) -> RedisNamespace:
        warnings.warn(_DEPRECATED.format(name=name), DeprecationWarning, stacklevel=3)
        return self._janitor if self._janitor is not None else RedisNamespace(str(self), "")

    @property
    def url(self) -> str:
        """Deprecated: the URL is the value itself (``str(mw_redis_url)``)."""
        return self._old("url").url

    @property
    def namespace(self) -> str:
        """Deprecated: ``mw_namespace + ":"``."""
        return self._old("namespace").namespace

    def key(self, name: str) -> str:
        """Deprecated: ``f"{mw_namespace}:{name}"``."""
        return self._old("key").key(name)

    def client(self, **kwargs: Any) -> redis.Redis:
        """Deprecated: use ``mw_redis`` (or ``redis.Redis.from_url(mw_redis_url)``)."""
        return self._old("client").client(**kwargs)


@dataclass
class RedisNamespace:
    """A Redis URL plus the key prefix this test owns; ``cleanup`` deletes exactly the keys under the prefix."""

    url: str = field(repr=False)
    namespace: str
    admin_url: str = field(default="", repr=False)
    """Cleanup connects here when set (a least-privilege ``url`` may not be allowed to SCAN)."""
    cluster: bool = False
    """``url`` names a node of a Redis Cluster: cleanup SCANs every primary (each holds only its slots' keys)."""
    _clients: list[redis.Redis] = field(default_factory=list, init=False, repr=False)

    def key(self, name: str) -> str:
        """``name`` inside this test's namespace."""
        return f"{self.namespace}{name}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for ``url`` (``kwargs`` go to ``Redis.from_url``), closed at teardown."""
        import redis

        client = redis.Redis.from_url(self.url, **kwargs)
        self._clients.append(client)
        return client

    def cleanup(self) -> int:
        """UNLINK every key under the namespace (SCAN MATCH, batched), close the clients; return how many went."""
        import redis

        for client in self._clients:
            client.close()
        self._clients.clear()
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.namespace) + "*"
        if self.cluster:
            from redis.cluster import RedisCluster

            with RedisCluster.from_url(self.admin_url or self.url) as cluster:
                # UNLINK of several keys is split by slot by the cluster client (a node refuses CROSSSLOT)
                return sum(_unlink_matching(cluster, pattern, target_nodes=node) for node in cluster.get_primaries())
        with redis.Redis.from_url(self.admin_url or self.url) as admin:
            return _unlink_matching(admin, pattern)


def _unlink_matching(client: Any, pattern: str, **scan: Any) -> int:
    """SCAN ``client`` (``scan``: a cluster's ``target_nodes``) for ``pattern``, UNLINK in batches; how many went."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=_UNLINK_BATCH, **scan):
        batch.append(key)
        if len(batch) >= _UNLINK_BATCH:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return int(deleted)


def with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` pointing at database ``dbname``; URLs stay URLs, key=value DSNs go through psycopg."""
    if "://" in dsn:
        return urlunsplit(urlsplit(dsn)._replace(path="/" + quote(dbname, safe="")))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=dbname)


@dataclass
class PostgresDatabase:
    """A throwaway database on the server at ``server_dsn``, cloned from ``template`` (PostgreSQL's default if None).

    Dropping uses ``WITH (FORCE)`` (PostgreSQL 13+) so connections a test leaked cannot keep the database alive.
    """

    server_dsn: str
    template: str | None = None
    name: str = field(default_factory=lambda: f"mwt_{uuid.uuid4().hex}")

    @property
    def dsn(self) -> str:
        return with_dbname(self.server_dsn, self.name)

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.server_dsn, autocommit=True, connect_timeout=10)

    def create(self) -> str:
        """Create the database and return its DSN."""
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name))
        if self.template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(self.template))
        with self._admin() as conn:
            conn.execute(statement)
        return self.dsn

    def drop(self) -> None:
        """Drop the database, disconnecting whoever is still connected."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
