"""Container providers through testcontainers: run with ``--mw-server-provider container`` and an engine up."""

from __future__ import annotations

import re
import time

import psycopg
import pytest
import redis

from pytest_mw.options import server_options
from pytest_mw.servers import ServerSpec, ServerUnavailable, factories
from pytest_mw.servers.containers import RedisContainerServer

pytest.importorskip("testcontainers")

container_redis = factories.redis_container()
container_redis_ns = factories.redis_url("container_redis")
container_postgres = factories.postgres_container()
container_postgres_db = factories.postgres_dsn("container_postgres")


@pytest.fixture(scope="session")
def _container_provider_chosen(pytestconfig: pytest.Config) -> None:
    if server_options(pytestconfig).provider != "container":
        pytest.skip("container tests run with --mw-server-provider container")


@pytest.mark.usefixtures("_container_provider_chosen")
def test_redis_container(container_redis: ServerSpec, container_redis_ns: str, mw_namespace: str) -> None:
    assert container_redis.provider == "container"
    assert container_redis.detail == "image redis:7"
    with redis.Redis.from_url(container_redis_ns) as client:
        client.set(f"{mw_namespace}:k", b"v", px=10_000)
        assert client.get(f"{mw_namespace}:k") == b"v"
        assert 0 < client.pttl(f"{mw_namespace}:k") <= 10_000


@pytest.mark.usefixtures("_container_provider_chosen")
def test_postgres_container_dsn_is_plain(container_postgres: ServerSpec, container_postgres_db: str) -> None:
    assert re.fullmatch(r"postgresql://postgres:postgres@[^:/]+:\d+/postgres", container_postgres.url)
    with psycopg.connect(container_postgres_db) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (7)")
        assert conn.execute("SELECT x FROM t").fetchone() == (7,)


def test_missing_engine_is_unavailable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"no container engine answers.*fetching server API version"):
        RedisContainerServer().start()
    assert time.monotonic() - started < 5
