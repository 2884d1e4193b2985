"""The pytest11 entry point of pytest-mw: the ``mw`` options, the report header and the real-server fixtures.

Importing this module must stay cheap (pytest loads it on every run): redis, psycopg and testcontainers are imported
only inside fixtures that start or talk to a server.
"""

from __future__ import annotations

import pytest

from pytest_mw.options import add_server_options, server_options
from pytest_mw.servers import factories
from pytest_mw.servers.provider import describe

REAL_SERVER_FIXTURES = frozenset({"mw_redis_server", "mw_postgres_server", "mw_redis_url", "mw_postgres_dsn"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mw", "mw: real Redis/PostgreSQL servers and the Mw cache")
    add_server_options(group, parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mw_real_servers: the test talks to a real Redis or PostgreSQL (added to tests using the mw_* server "
        "fixtures; deselect with -m 'not mw_real_servers')",
    )
    server_options(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    o = server_options(config)
    redis_plan = describe("redis", o.provider, url=o.redis_url, executable=o.redis_exec, image=o.redis_image)
    postgres_plan = describe("postgres", o.provider, url=o.postgres_dsn, image=o.postgres_image)
    summary = f"mw servers: provider={o.provider}, require servers={o.require_servers}"
    return [summary, f"mw {redis_plan}", f"mw {postgres_plan}"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mw_real_servers)


mw_redis_server = factories.redis_server()
"""Session: the Redis ``ServerSpec`` chosen by ``--mw-server-provider``."""

mw_postgres_server = factories.postgres_server()
"""Session: the PostgreSQL ``ServerSpec`` chosen by ``--mw-server-provider``."""

mw_redis_url = factories.redis_url("mw_redis_server")
"""Per test: ``RedisNamespace`` with ``.url``, ``.namespace``, ``.key()``, ``.client()``; its keys go at teardown."""

mw_postgres_dsn = factories.postgres_dsn("mw_postgres_server")
"""Per test: DSN of a fresh database, dropped at teardown."""
