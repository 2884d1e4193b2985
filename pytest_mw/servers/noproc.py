"""Servers someone else runs: nothing to start, only a check that the URL answers before tests rely on it."""

from __future__ import annotations

from mw.secrets import mask_secrets
from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.readiness import postgres_ping, redis_ping
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class RedisNoProc:
    """An existing Redis at ``url``; tests must clean up by namespace since the server is shared."""

    kind: Kind = "redis"
    provider: ProviderName = "noproc"

    def __init__(self, url: str = DEFAULT_REDIS_URL, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout

    @property
    def label(self) -> str:
        return f"noproc {mask_secrets(self.url)}"

    def start(self) -> ServerSpec:
        try:
            redis_ping(self.url, self.timeout)
        except Exception as exc:
            raise ServerUnavailable(f"cannot reach Redis at {mask_secrets(self.url)} ({exc})") from exc
        return ServerSpec("redis", self.url, "noproc")

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""


class PostgresNoProc:
    """An existing PostgreSQL at ``dsn``; its user needs CREATEDB for the per-test databases."""

    kind: Kind = "postgres"
    provider: ProviderName = "noproc"

    def __init__(self, dsn: str = DEFAULT_POSTGRES_DSN, timeout: float = 2.0) -> None:
        self.dsn = dsn
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self.dsn

    @property
    def label(self) -> str:
        return f"noproc {mask_secrets(self.dsn)}"

    def start(self) -> ServerSpec:
        try:
            postgres_ping(self.dsn, self.timeout)
        except Exception as exc:
            reason = str(exc).strip().replace("\n", " ")
            raise ServerUnavailable(f"cannot reach PostgreSQL at {mask_secrets(self.dsn)} ({reason})") from exc
        return ServerSpec("postgres", self.dsn, "noproc")

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""
