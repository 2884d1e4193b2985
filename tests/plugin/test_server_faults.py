"""The servers' fault handles (what ``--realtime`` faults use): pause, resume, kill and restart; containers pause."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
import redis

from pytest_mw.options import server_options
from pytest_mw.servers.containers import PostgresContainerServer, RedisContainerServer
from pytest_mw.servers.postgres_proc import PostgresProcess
from pytest_mw.servers.readiness import process_state, wait_stopped
from pytest_mw.servers.redis_proc import RedisProcess
from pytest_mw.servers.spec import ServerSpec


def test_a_paused_redis_times_out_and_answers_with_its_data_when_resumed() -> None:
    with RedisProcess() as server, redis.Redis.from_url(server.url, socket_timeout=0.05) as client:
        client.set("k", "v")
        server.pause()
        assert process_state(server.pid) == "T"
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        assert client.get("k") == b"v"


def test_a_killed_redis_restarts_empty_on_the_same_url() -> None:
    with RedisProcess() as server:
        url, pid = server.url, server.pid
        with redis.Redis.from_url(url, socket_timeout=1.0) as client:
            client.set("k", "v")
            server.kill()
            with pytest.raises(redis.ConnectionError):
                client.ping()
            server.restart()
            assert server.url == url and server.pid != pid
            assert client.get("k") is None


def test_restart_without_kill_is_refused() -> None:
    with RedisProcess() as server, pytest.raises(RuntimeError, match="follows kill"):
        server.restart()


def test_a_paused_postgres_stops_its_backends_too() -> None:
    with PostgresProcess() as server, psycopg.connect(server.dsn, autocommit=True) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        server.pause()
        assert process_state(server.pid) == "T" and process_state(backend[0]) == "T"
        server.resume()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _zombie() -> subprocess.Popen[bytes]:
    """A child that exited and that this process has not reaped yet (state ``Z``)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30.0
    while process_state(child.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.001)
    assert process_state(child.pid) == "Z"
    return child


def test_waiting_for_a_stop_passes_over_an_exited_child_its_stopped_parent_cannot_reap() -> None:
    """A backend that exits as the postmaster is paused stays a zombie (``Z``) until the postmaster runs again; the
    leader itself exited is no stop at all."""
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = _zombie()
    try:
        os.kill(leader.pid, signal.SIGSTOP)
        wait_stopped(leader.pid, [zombie.pid], timeout=5.0)
        with pytest.raises(ProcessLookupError, match=rf"process {zombie.pid} has exited \(state 'Z'\)"):
            wait_stopped(zombie.pid, timeout=0.5)
    finally:
        leader.kill()
        leader.wait()
        zombie.wait()


def test_waiting_for_a_stop_fails_on_a_process_that_runs_on_naming_its_state() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(TimeoutError, match=rf"process {child.pid} did not stop .*state '[RSD]'"):
            wait_stopped(child.pid, timeout=0.05)
        os.kill(child.pid, signal.SIGSTOP)
        wait_stopped(child.pid, timeout=5.0)
        assert process_state(child.pid) == "T"
    finally:
        child.kill()
        child.wait()


@contextlib.contextmanager
def _running(server: RedisContainerServer | PostgresContainerServer) -> Iterator[ServerSpec]:
    """A started container, stopped and removed afterwards whatever the test did to it."""
    pytest.importorskip("testcontainers")
    spec = server.start()
    try:
        yield spec
    finally:
        server.stop()


@pytest.fixture
def _container_provider_chosen(pytestconfig: pytest.Config) -> None:
    if server_options(pytestconfig).provider != "container":
        pytest.skip("container tests run with --mw-server-provider container")


@pytest.mark.usefixtures("_container_provider_chosen")
def test_a_paused_redis_container_times_out_and_answers_when_resumed() -> None:
    server = RedisContainerServer()
    with _running(server) as spec, redis.Redis.from_url(spec.url, socket_timeout=0.2) as client:
        client.set("k", "v")
        server.pause()
        assert server.status == "paused"
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        assert server.status == "running" and client.get("k") == b"v"


def test_a_killed_postgres_refuses_connections_and_keeps_its_rows_after_restart() -> None:
    with PostgresProcess() as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (1)")
            pid = server.pid
            server.kill()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        server.restart()
        assert server.pid != pid
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]


@pytest.mark.usefixtures("_container_provider_chosen")
def test_a_killed_redis_container_restarts_empty_on_the_same_url() -> None:
    server = RedisContainerServer()
    with _running(server) as spec, redis.Redis.from_url(spec.url, socket_timeout=1.0) as client:
        client.set("k", "v")
        client.save()  # a snapshot on disk: the restart must not load it
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.restart()
        assert server.url == spec.url and client.get("k") is None


@pytest.mark.usefixtures("_container_provider_chosen")
def test_a_killed_postgres_container_refuses_connections_and_keeps_its_rows_after_restart() -> None:
    server = PostgresContainerServer()
    with _running(server) as spec:
        with psycopg.connect(spec.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (1)")
            server.kill()
            assert server.status == "exited"
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        server.restart()
        assert server.url == spec.url and server.status == "running"
        with psycopg.connect(spec.url, autocommit=True) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
        with pytest.raises(RuntimeError, match="follows kill"):
            server.restart()


def test_a_killed_tls_redis_restarts_with_the_same_certificates_and_users() -> None:
    with RedisProcess(tls=True) as server:
        url = server.url
        server.kill()
        server.restart()
        assert server.url == url
        with redis.Redis.from_url(server.admin_url, socket_timeout=1.0) as client:
            assert client.ping()
