"""The plugin's own fixtures, served by whichever provider ``--mw-server-provider`` chose."""

from __future__ import annotations

import re

import psycopg
import pytest
import redis

from pytest_mw.options import server_options
from pytest_mw.servers import ServerSpec
from pytest_mw.servers.clients import PostgresDSN, RedisURL


def _check_provider(spec: ServerSpec, config: pytest.Config) -> None:
    chosen = server_options(config).provider
    if chosen == "auto":
        assert spec.provider in ("container", "process")
    else:
        assert spec.provider == chosen


def test_mw_redis_url(
    mw_redis_server: ServerSpec, mw_redis_url: str, mw_namespace: str, pytestconfig: pytest.Config
) -> None:
    _check_provider(mw_redis_server, pytestconfig)
    assert isinstance(mw_redis_url, RedisURL) and mw_redis_url == mw_redis_server.url
    assert re.fullmatch(r"mwt:[0-9a-f]{32}", mw_namespace)
    with redis.Redis.from_url(mw_redis_url) as client:
        client.set(f"{mw_namespace}:a", b"1", px=5_000)
        assert client.get(f"{mw_namespace}:a") == b"1"
        assert 0 < client.pttl(f"{mw_namespace}:a") <= 5_000


def test_mw_postgres_dsn(mw_postgres_server: ServerSpec, mw_postgres_dsn: str, pytestconfig: pytest.Config) -> None:
    _check_provider(mw_postgres_server, pytestconfig)
    assert isinstance(mw_postgres_dsn, PostgresDSN) and mw_postgres_dsn.endswith("/" + mw_postgres_dsn.dbname)
    assert re.fullmatch(r"postgresql://[^/+]+/mwt_[0-9a-f]{32}", mw_postgres_dsn)
    with psycopg.connect(mw_postgres_dsn) as conn:
        conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v jsonb)")
        conn.execute("INSERT INTO kv VALUES ('a', '{\"n\": 1}')")
        assert conn.execute("SELECT v->>'n' FROM kv WHERE k = 'a'").fetchone() == ("1",)


def test_tests_using_server_fixtures_are_marked(request: pytest.FixtureRequest, mw_redis_url: str) -> None:
    assert request.node.get_closest_marker("mw_real_servers") is not None
