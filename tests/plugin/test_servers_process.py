"""The process providers start real servers that real clients talk to, and clean up after themselves."""

from __future__ import annotations

import os
import pwd
import re
import socket
from pathlib import Path

import psycopg
import pytest
import redis

from pytest_mw.servers import ExecutableNotFound, ServerSpec, ServerUnavailable, factories
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.postgres_proc import PostgresProcess
from pytest_mw.servers.redis_proc import RedisProcess, find_executable

redis_proc_ns = factories.redis_url("redis_proc_server")
postgres_proc_db = factories.postgres_dsn("postgres_proc_server")


def test_redis_process_serves_px_and_pttl(redis_proc_server: ServerSpec, redis_proc_ns: str, mw_namespace: str) -> None:
    assert redis_proc_server.provider == "process"
    assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", redis_proc_server.url)
    assert redis_proc_ns == redis_proc_server.url
    key = f"{mw_namespace}:greeting"
    with redis.Redis.from_url(redis_proc_ns) as client:
        assert client.set(key, b"hello", px=60_000)
        assert client.get(key) == b"hello"
        assert 0 < client.pttl(key) <= 60_000


def test_redis_process_on_a_given_port_stops_and_removes_its_dir() -> None:
    port = free_port()
    with RedisProcess(port=port) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        tmpdir = server._tmpdir
        assert tmpdir is not None and tmpdir.is_dir()
    assert not tmpdir.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_redis_process_port_clash_reports_the_log() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ServerUnavailable, match=r"redis-server did not start.*log:"):
            RedisProcess(port=port, startup_timeout=3).start()


def test_missing_redis_server_names_the_paths_tried() -> None:
    with pytest.raises(ExecutableNotFound, match=r"tried: /nonexistent/redis-server\. .*--mw-redis-exec"):
        RedisProcess(executable="/nonexistent/redis-server").start()
    with pytest.raises(ExecutableNotFound) as info:
        find_executable(None, "mw-absent-server", ("/nonexistent/a", "/nonexistent/b"), "hint")
    assert info.value.tried == ("mw-absent-server on $PATH", "/nonexistent/a", "/nonexistent/b")


def test_postgres_process_create_insert_select(postgres_proc_server: ServerSpec, postgres_proc_db: str) -> None:
    assert postgres_proc_server.provider == "process"
    assert re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:\d+/postgres", postgres_proc_server.url)
    assert re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:\d+/mwt_[0-9a-f]{32}", postgres_proc_db)
    with psycopg.connect(postgres_proc_db) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO item VALUES (1, 'one'), (2, 'two')")
        assert conn.execute("SELECT name FROM item ORDER BY id").fetchall() == [("one",), ("two",)]
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_postgres_process_each_test_gets_a_fresh_database(postgres_proc_db: str) -> None:
    with psycopg.connect(postgres_proc_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'item'").fetchone() == (0,)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to hand PostgreSQL to another user")
def test_postgres_process_runs_unprivileged_when_we_are_root(postgres_proc_server: ServerSpec) -> None:
    with psycopg.connect(postgres_proc_server.url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # Looked at while the connection is open: the backend process exits with it.
        assert Path(f"/proc/{row[0]}").stat().st_uid == pwd.getpwnam("postgres").pw_uid


def test_missing_postgres_binaries_name_the_paths_tried() -> None:
    tried = r"initdb/pg_ctl not found; tried: /nonexistent/bin \(no such directory\)\."
    with pytest.raises(ExecutableNotFound, match=tried):
        PostgresProcess(bindir="/nonexistent/bin").start()
