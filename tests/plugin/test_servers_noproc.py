"""noproc: servers someone else runs, reached by URL; per-test cleanup must leave everyone else's data alone."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest
import redis

from pytest_mw.servers import ServerSpec, ServerUnavailable, factories
from pytest_mw.servers.clients import PostgresDatabase, RedisNamespace, new_namespace
from pytest_mw.servers.noproc import DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL, PostgresNoProc, RedisNoProc
from pytest_mw.servers.readiness import postgres_ping, redis_ping


def _machine_server(probe: Callable[[str, float], None], url: str) -> None:
    """The machine's own servers are an environment fact, not a provider choice: absent means skip, even strict."""
    try:
        probe(url, 1.0)
    except Exception as exc:
        pytest.skip(f"no server at {url}: {exc}")


@pytest.fixture(scope="module")
def _machine_redis() -> None:
    _machine_server(redis_ping, DEFAULT_REDIS_URL)


@pytest.fixture(scope="module")
def _machine_postgres() -> None:
    _machine_server(postgres_ping, DEFAULT_POSTGRES_DSN)


shared_redis = factories.redis_noproc(DEFAULT_REDIS_URL)
shared_redis_ns = factories.redis_url("shared_redis")
shared_postgres = factories.postgres_noproc(DEFAULT_POSTGRES_DSN)
shared_postgres_db = factories.postgres_dsn("shared_postgres")


@pytest.mark.usefixtures("_machine_redis")
def test_noproc_redis_on_the_machine(shared_redis: ServerSpec, shared_redis_ns: str, mw_namespace: str) -> None:
    assert shared_redis.provider == "noproc"
    with redis.Redis.from_url(shared_redis_ns, decode_responses=True) as client:
        client.set(f"{mw_namespace}:k", "v", px=30_000)
        assert client.get(f"{mw_namespace}:k") == "v"
        assert 0 < client.pttl(f"{mw_namespace}:k") <= 30_000


@pytest.mark.usefixtures("_machine_redis")
def test_namespace_cleanup_deletes_only_its_own_keys_on_a_shared_server() -> None:
    namespace = RedisNamespace(DEFAULT_REDIS_URL, new_namespace())
    outside = f"mw-outside-{uuid.uuid4().hex}"
    client = namespace.client()
    try:
        client.set(outside, b"keep", ex=60)
        client.mset({namespace.key(f"k{i}"): i for i in range(1234)})
        assert namespace.cleanup() == 1234
        with redis.Redis.from_url(DEFAULT_REDIS_URL) as check:
            assert check.get(outside) == b"keep"
            assert list(check.scan_iter(match=namespace.namespace + "*")) == []
    finally:
        with redis.Redis.from_url(DEFAULT_REDIS_URL) as check:
            check.unlink(outside)


def test_namespace_with_glob_characters_is_matched_literally(redis_proc_server: ServerSpec) -> None:
    namespace = RedisNamespace(redis_proc_server.url, new_namespace("mw[x]*"))
    lookalike = namespace.namespace.replace("mw[x]*", "mwxZZ") + "k"
    client = namespace.client()
    client.set(namespace.key("k"), 1)
    client.set(lookalike, 1)
    assert namespace.cleanup() == 1
    with redis.Redis.from_url(redis_proc_server.url) as check:
        assert check.exists(lookalike) == 1
        check.unlink(lookalike)


def test_noproc_against_a_server_we_started(redis_proc_server: ServerSpec) -> None:
    server = RedisNoProc(redis_proc_server.url)
    assert server.start() == ServerSpec("redis", redis_proc_server.url, "noproc")
    server.stop()


def test_noproc_unreachable_says_where_and_why() -> None:
    with pytest.raises(ServerUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0 \(.+\)"):
        RedisNoProc("redis://127.0.0.1:1/0", timeout=1).start()
    with pytest.raises(ServerUnavailable, match=r"cannot reach PostgreSQL at postgresql://u:\*\*\*@127\.0\.0\.1:1/x"):
        PostgresNoProc("postgresql://u:secret@127.0.0.1:1/x", timeout=1).start()


@pytest.mark.usefixtures("_machine_postgres")
def test_noproc_postgres_on_the_machine(shared_postgres: ServerSpec, shared_postgres_db: str) -> None:
    assert shared_postgres.provider == "noproc"
    with psycopg.connect(shared_postgres_db) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (41), (1)")
        assert conn.execute("SELECT sum(x) FROM t").fetchone() == (42,)


@pytest.mark.usefixtures("_machine_postgres")
def test_database_drop_forces_out_leftover_connections() -> None:
    database = PostgresDatabase(DEFAULT_POSTGRES_DSN)
    leftover = psycopg.connect(database.create())
    try:
        database.drop()
        with psycopg.connect(DEFAULT_POSTGRES_DSN) as conn:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (database.name,)).fetchone()
        assert row == (0,)
    finally:
        leftover.close()
