"""Fixture factories in the pytest-redis / pytest-postgresql style, so a conftest can make more servers and clients.

    from pytest_mw.servers import factories

    redis_7 = factories.redis_container(image="redis:7")        # session-scoped ServerSpec
    redis_7_url = factories.redis_url("redis_7")                 # per test: its URL (a str); keys of
                                                                 # mw_namespace deleted at teardown

Server factories return session-scoped fixtures yielding a ``ServerSpec``; when the server cannot be had the test is
skipped with the reason, or fails if ``--mw-require-servers`` is set. Arguments given here beat the command line,
which beats the ini file. Every fixture made here has a docstring (``pytest --fixtures`` shows it); ``doc=``
replaces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from pytest_mw.servers.clients import PostgresDatabase, PostgresDSN, RedisNamespace, RedisURL, unique_namespace
from pytest_mw.servers.containers import PostgresContainerServer, RedisContainerServer
from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.noproc import DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL, PostgresNoProc, RedisNoProc
from pytest_mw.servers.postgres_proc import PostgresProcess
from pytest_mw.servers.provider import ProviderChoice, candidates, start_first
from pytest_mw.servers.redis_proc import RedisProcess
from pytest_mw.servers.settings import ServerOptions, stashed_server_options
from pytest_mw.servers.spec import Kind, Server, ServerSpec

FixtureFunction = Callable[..., Any]


def _first_set(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def unavailable(kind: Kind, exc: ServerUnavailable, options: ServerOptions) -> NoReturn:
    """Skip with the reason, or fail when the run requires real servers.

    Call it outside the ``except`` block that caught ``exc``: raised inside it, pytest prints the reason twice (the
    caught exception, then "During handling of the above exception" and ours).
    """
    message = f"mw: {kind} server unavailable: {exc.reason}"
    if options.require_servers:
        pytest.fail(f"{message} (--mw-require-servers is set)", pytrace=False)
    pytest.skip(message)


def _server_fixture(kind: Kind, make: Callable[[ServerOptions], list[Server]], doc: str) -> FixtureFunction:
    """A session fixture that starts the first of ``make(options)`` that works and stops it at the end."""

    def server_fixture(request: pytest.FixtureRequest) -> Iterator[ServerSpec]:
        options = stashed_server_options(request.config)
        failure: ServerUnavailable | None = None
        try:
            server, spec = start_first(make(options))
        except ServerUnavailable as exc:
            failure = exc
        if failure is not None:
            unavailable(kind, failure, options)
        try:
            yield spec
        finally:
            server.stop()

    server_fixture.__doc__ = doc + _SKIP_NOTE
    return pytest.fixture(scope="session")(server_fixture)


_SKIP_NOTE = " Skipped with the reason when it cannot be had; an error with ``--mw-require-servers``."


def redis_proc(port: int | None = None, executable: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """A throwaway ``redis-server`` on ``port`` (free port if None); ``executable`` beats ``--mw-redis-exec``."""
    return _server_fixture(
        "redis",
        lambda o: [RedisProcess(executable=_first_set(executable, o.redis_exec), port=port)],
        doc or f"Session: a throwaway redis-server process on {port or 'a free port'} (``ServerSpec``).",
    )


def redis_tls_proc(executable: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """A throwaway TLS-only ``redis-server`` with ACL users (see :class:`RedisProcess` ``tls=True``)."""
    return _server_fixture(
        "redis",
        lambda o: [RedisProcess(executable=_first_set(executable, o.redis_exec), tls=True)],
        doc or "Session: a throwaway TLS-only redis-server process with ACL users (``ServerSpec``; ``.admin_url``).",
    )


def redis_noproc(url: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """A running Redis at ``url``, else ``--mw-redis-url``, else ``redis://127.0.0.1:6379/0``."""
    return _server_fixture(
        "redis",
        lambda o: [RedisNoProc(_first_set(url, o.redis_url, DEFAULT_REDIS_URL))],
        doc or "Session: a Redis someone else runs (the factory's URL, else ``--mw-redis-url``) as a ``ServerSpec``.",
    )


def redis_container(image: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """Redis in a container from ``image``, else ``--mw-redis-image`` (default ``redis:7``)."""
    return _server_fixture(
        "redis",
        lambda o: [RedisContainerServer(_first_set(image, o.redis_image))],
        doc or f"Session: Redis in a container ({image or '--mw-redis-image'}) as a ``ServerSpec``.",
    )


def postgres_proc(port: int | None = None, bindir: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """A throwaway PostgreSQL cluster on ``port`` (free port if None); ``bindir`` (the directory of ``pg_ctl``, or
    ``pg_ctl`` itself) beats ``--mw-postgres-exec``, else the binaries are searched for."""
    return _server_fixture(
        "postgres",
        lambda o: [PostgresProcess(port=port, bindir=_first_set(bindir, o.postgres_exec))],
        doc or f"Session: a throwaway PostgreSQL cluster (initdb, pg_ctl) on {port or 'a free port'}: ``ServerSpec``.",
    )


def postgres_noproc(dsn: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """A running PostgreSQL at ``dsn``, else ``--mw-postgres-dsn``, else ``postgresql://postgres@127.0.0.1:5432/postgres``."""
    return _server_fixture(
        "postgres",
        lambda o: [PostgresNoProc(_first_set(dsn, o.postgres_dsn, DEFAULT_POSTGRES_DSN))],
        doc or "Session: a PostgreSQL someone else runs (factory DSN, else ``--mw-postgres-dsn``), a ``ServerSpec``.",
    )


def postgres_container(image: str | None = None, *, doc: str | None = None) -> FixtureFunction:
    """PostgreSQL in a container from ``image``, else ``--mw-postgres-image`` (default ``postgres:15``)."""
    return _server_fixture(
        "postgres",
        lambda o: [PostgresContainerServer(_first_set(image, o.postgres_image))],
        doc or f"Session: PostgreSQL in a container ({image or '--mw-postgres-image'}) as a ``ServerSpec``.",
    )


def redis_server(provider: ProviderChoice | None = None, *, doc: str | None = None) -> FixtureFunction:
    """Redis from the resolver: ``provider`` beats ``--mw-server-provider`` (``auto`` by default)."""
    return _server_fixture(
        "redis",
        lambda o: candidates(
            "redis", _first_set(provider, o.provider), url=o.redis_url, executable=o.redis_exec, image=o.redis_image
        ),
        doc or "Session: the Redis ``ServerSpec`` that ``--mw-server-provider`` chooses.",
    )


def postgres_server(provider: ProviderChoice | None = None, *, doc: str | None = None) -> FixtureFunction:
    """PostgreSQL from the resolver: ``provider`` beats ``--mw-server-provider`` (``auto`` by default)."""
    return _server_fixture(
        "postgres",
        lambda o: candidates(
            "postgres",
            _first_set(provider, o.provider),
            url=o.postgres_dsn,
            executable=o.postgres_exec,
            image=o.postgres_image,
        ),
        doc or "Session: the PostgreSQL ``ServerSpec`` that ``--mw-server-provider`` chooses.",
    )


def redis_url(
    server_fixture_name: str | Callable[[pytest.FixtureRequest], str] = "mw_redis_server",
    prefix: str | None = None,
    *,
    doc: str | None = None,
) -> FixtureFunction:
    """Per test: the server's URL as a ``RedisURL`` (a ``str``); keys under the test's namespace go at teardown.

    ``server_fixture_name`` names the server fixture, or picks it per test. The namespace is the test's
    ``mw_namespace`` (shared with ``mw_config``/``mw_redis``), or a namespace of its own, ``{prefix}:{hex}``, when
    ``prefix`` is given. Cleanup goes through the server's admin URL (its least-privilege user may not SCAN others).
    The server fixture may also yield a :class:`RedisClusterProcesses` (the URL of a primary; cleanup SCANs every
    primary) or a :class:`RedisSentinelGroup` (the URL of the primary now, cleaned at teardown).
    """

    def redis_url_fixture(request: pytest.FixtureRequest) -> Iterator[RedisURL]:
        from pytest_mw.servers.redis_cluster import RedisClusterProcesses

        name = server_fixture_name if isinstance(server_fixture_name, str) else server_fixture_name(request)
        spec = request.getfixturevalue(name)  # a ServerSpec, or a cluster or Sentinel provider (same .url)
        namespace = request.getfixturevalue("mw_namespace") if prefix is None else unique_namespace(prefix)
        cluster = isinstance(spec, RedisClusterProcesses)
        janitor = RedisNamespace(spec.url, namespace + ":", admin_url=spec.admin_url, cluster=cluster)
        try:
            yield RedisURL.on(spec.url, janitor)
        finally:
            # A cluster's or a Sentinel group's URL names the node that is a primary now (a test may fail over)
            janitor.url, janitor.admin_url = spec.url, spec.admin_url
            janitor.cleanup()

    server = f"``{server_fixture_name}``" if isinstance(server_fixture_name, str) else "the test's Redis"
    redis_url_fixture.__doc__ = doc or (
        f"Per test: the URL (a ``str``, password masked in its repr) of {server}; every key under "
        f"{'``mw_namespace``' if prefix is None else 'its own namespace'} is deleted at teardown (never FLUSHALL)."
    )
    return pytest.fixture(redis_url_fixture)


def postgres_dsn(
    server_fixture_name: str = "mw_postgres_server", template: str | None = None, *, doc: str | None = None
) -> FixtureFunction:
    """Per test: the DSN (a ``PostgresDSN``) of a fresh database on that server (cloned from ``template``), dropped
    at teardown."""

    def postgres_dsn_fixture(request: pytest.FixtureRequest) -> Iterator[PostgresDSN]:
        spec: ServerSpec = request.getfixturevalue(server_fixture_name)
        database = PostgresDatabase(spec.url, template=template)
        dsn = PostgresDSN(database.create())
        try:
            yield dsn
        finally:
            database.drop()

    postgres_dsn_fixture.__doc__ = doc or (
        f"Per test: the DSN (a ``str``, password masked in its repr) of a fresh database on ``{server_fixture_name}``"
        f"{f' cloned from {template}' if template else ''}, dropped at teardown (leftover connections too)."
    )
    return pytest.fixture(postgres_dsn_fixture)
