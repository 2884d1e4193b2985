"""Per-test cleanliness that is safe on a shared server.

Redis: each test gets a unique key namespace and only keys under it are deleted (never FLUSHALL/FLUSHDB, which would
wipe someone else's data, cf. pytest-redis #571). PostgreSQL: each test gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_UNLINK_BATCH = 500


def new_namespace(prefix: str = "mwt") -> str:
    """A key prefix no other test (or xdist worker) will use, e.g. ``mwt:3f2a...:``."""
    return f"{prefix}:{uuid.uuid4().hex}:"


@dataclass
class RedisNamespace:
    """A Redis URL plus the key prefix this test owns; ``cleanup`` deletes exactly the keys under the prefix."""

    url: str
    namespace: str
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
        deleted = 0
        with redis.Redis.from_url(self.url) as admin:
            batch: list[bytes] = []
            for key in admin.scan_iter(match=pattern, count=_UNLINK_BATCH):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    deleted += admin.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += admin.unlink(*batch)
        return deleted


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
