"""Fixture factories in the pytest-redis / pytest-postgresql style, so a conftest can make more servers and clients.

    from pytest_mw.servers import factories

    redis_7 = factories.redis_container(image="redis:7")        # session-scoped ServerSpec
    redis_ns = factories.redis_url("redis_7")                    # function-scoped RedisNamespace on it

Server factories return session-scoped fixtures yielding a ``ServerSpec``; when the server cannot be had the test is
skipped with the reason, or fails if ``--mw-require-servers`` is set. Arguments given here beat the command line,
which beats the ini file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from pytest_mw.options import ServerOptions, server_options
from pytest_mw.servers.clients import PostgresDatabase, RedisNamespace, new_namespace
from pytest_mw.servers.containers import PostgresContainerServer, RedisContainerServer
from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.noproc import DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL, PostgresNoProc, RedisNoProc
from pytest_mw.servers.postgres_proc import PostgresProcess
from pytest_mw.servers.provider import ProviderChoice, candidates, start_first
from pytest_mw.servers.redis_proc import RedisProcess
from pytest_mw.servers.spec import Kind, Server, ServerSpec

FixtureFunction = Callable[..., Any]


def _first_set(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def unavailable(kind: Kind, exc: ServerUnavailable, options: ServerOptions) -> NoReturn:
    """Skip with the reason, or fail when the run requires real servers."""
    message = f"mw: {kind} server unavailable: {exc.reason}"
    if options.require_servers:
        pytest.fail(f"{message} (--mw-require-servers is set)", pytrace=False)
    pytest.skip(message)


def _server_fixture(kind: Kind, make: Callable[[ServerOptions], list[Server]]) -> FixtureFunction:
    """A session fixture that starts the first of ``make(options)`` that works and stops it at the end."""

    @pytest.fixture(scope="session")
    def server_fixture(request: pytest.FixtureRequest) -> Iterator[ServerSpec]:
        options = server_options(request.config)
        try:
            server, spec = start_first(make(options))
        except ServerUnavailable as exc:
            unavailable(kind, exc, options)
        try:
            yield spec
        finally:
            server.stop()

    return server_fixture


def redis_proc(port: int | None = None, executable: str | None = None) -> FixtureFunction:
    """A throwaway ``redis-server`` on ``port`` (free port if None); ``executable`` beats ``--mw-redis-exec``."""
    return _server_fixture(
        "redis", lambda o: [RedisProcess(executable=_first_set(executable, o.redis_exec), port=port)]
    )


def redis_noproc(url: str | None = None) -> FixtureFunction:
    """A running Redis at ``url``, else ``--mw-redis-url``, else ``redis://127.0.0.1:6379/0``."""
    return _server_fixture("redis", lambda o: [RedisNoProc(_first_set(url, o.redis_url, DEFAULT_REDIS_URL))])


def redis_container(image: str | None = None) -> FixtureFunction:
    """Redis in a container from ``image``, else ``--mw-redis-image`` (default ``redis:7``)."""
    return _server_fixture("redis", lambda o: [RedisContainerServer(_first_set(image, o.redis_image))])


def postgres_proc(port: int | None = None, bindir: str | None = None) -> FixtureFunction:
    """A throwaway PostgreSQL cluster on ``port`` (free port if None), binaries from ``bindir`` or found."""
    return _server_fixture("postgres", lambda o: [PostgresProcess(port=port, bindir=bindir)])


def postgres_noproc(dsn: str | None = None) -> FixtureFunction:
    """A running PostgreSQL at ``dsn``, else ``--mw-postgres-dsn``, else ``postgresql://postgres@127.0.0.1:5432/postgres``."""
    return _server_fixture(
        "postgres", lambda o: [PostgresNoProc(_first_set(dsn, o.postgres_dsn, DEFAULT_POSTGRES_DSN))]
    )


def postgres_container(image: str | None = None) -> FixtureFunction:
    """PostgreSQL in a container from ``image``, else ``--mw-postgres-image`` (default ``postgres:15``)."""
    return _server_fixture("postgres", lambda o: [PostgresContainerServer(_first_set(image, o.postgres_image))])


def redis_server(provider: ProviderChoice | None = None) -> FixtureFunction:
    """Redis from the resolver: ``provider`` beats ``--mw-server-provider`` (``auto`` by default)."""
    return _server_fixture(
        "redis",
        lambda o: candidates(
            "redis", _first_set(provider, o.provider), url=o.redis_url, executable=o.redis_exec, image=o.redis_image
        ),
    )


def postgres_server(provider: ProviderChoice | None = None) -> FixtureFunction:
    """PostgreSQL from the resolver: ``provider`` beats ``--mw-server-provider`` (``auto`` by default)."""
    return _server_fixture(
        "postgres",
        lambda o: candidates("postgres", _first_set(provider, o.provider), url=o.postgres_dsn, image=o.postgres_image),
    )


def redis_url(server_fixture_name: str = "mw_redis_server", prefix: str = "mwt") -> FixtureFunction:
    """Per test: a ``RedisNamespace`` on that server; keys under its namespace are deleted at teardown."""

    @pytest.fixture
    def redis_namespace_fixture(request: pytest.FixtureRequest) -> Iterator[RedisNamespace]:
        spec: ServerSpec = request.getfixturevalue(server_fixture_name)
        namespace = RedisNamespace(spec.url, new_namespace(prefix))
        try:
            yield namespace
        finally:
            namespace.cleanup()

    return redis_namespace_fixture


def postgres_dsn(server_fixture_name: str = "mw_postgres_server", template: str | None = None) -> FixtureFunction:
    """Per test: the DSN of a fresh database on that server (cloned from ``template``), dropped at teardown."""

    @pytest.fixture
    def postgres_database_fixture(request: pytest.FixtureRequest) -> Iterator[str]:
        spec: ServerSpec = request.getfixturevalue(server_fixture_name)
        database = PostgresDatabase(spec.url, template=template)
        dsn = database.create()
        try:
            yield dsn
        finally:
            database.drop()

    return postgres_database_fixture
