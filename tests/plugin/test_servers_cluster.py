"""The cluster provider forms a real 3+3 Redis Cluster that redis-py's cluster client uses, survives a failover, a
crash and a reshard, and leaves no process or directory behind."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from pytest_mw.servers import ServerUnavailable
from pytest_mw.servers.redis_cluster import ClusterNode, RedisClusterProcesses, redis_cluster_proc
from pytest_mw.servers.redis_proc import find_redis_server

cluster = redis_cluster_proc(scope="module")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def client(cluster: RedisClusterProcesses) -> Iterator[RedisCluster]:
    with RedisCluster.from_url(cluster.url, socket_timeout=10) as client:
        yield client


def key_on(cluster: RedisClusterProcesses, primary: ClusterNode, prefix: str) -> str:
    """A key whose slot ``primary`` serves now."""
    return next(
        key
        for key in (f"mwt:{prefix}:{n}" for n in range(10_000))
        if any(a <= cluster.keyslot(key) <= b for a, b in primary.slots)
    )


def test_three_primaries_with_a_replica_each_cover_every_slot(cluster: RedisClusterProcesses) -> None:
    assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", cluster.spec.url)
    assert cluster.spec.url == cluster.url
    nodes = cluster.nodes()
    primaries = [node for node in nodes if node.role == "primary"]
    assert len(primaries) == 3
    assert sorted(node.primary_id for node in nodes if node.role == "replica") == sorted(p.node_id for p in primaries)
    covered = sorted(slot for p in primaries for first, last in p.slots for slot in range(first, last + 1))
    assert covered == list(range(16384))
    assert len({node.port for node in nodes}) == 6
    assert all(node.pid is not None and alive(node.pid) for node in nodes)


def test_a_cluster_client_reads_and_writes_keys_on_every_primary(
    cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    for primary in cluster.primaries():
        key = key_on(cluster, primary, "spread")
        assert client.set(key, primary.port)
        assert client.get(key) == str(primary.port).encode()
        with redis.Redis.from_url(primary.url) as direct:
            assert direct.get(key) == str(primary.port).encode()
        other = next(p for p in cluster.primaries() if p.port != primary.port)
        moved = rf"{cluster.keyslot(key)} 127\.0\.0\.1:{primary.port}$"
        with redis.Redis.from_url(other.url) as direct, pytest.raises(MovedError, match=moved):
            direct.get(key)


def test_the_async_cluster_client_works_too(cluster: RedisClusterProcesses) -> None:
    """The runtime's async path uses ``redis.asyncio.cluster.RedisCluster``: it must discover the nodes as well."""
    keys = [key_on(cluster, primary, "async") for primary in cluster.primaries()]

    async def roundtrip() -> list[bytes | None]:
        async with AsyncRedisCluster.from_url(cluster.url, socket_timeout=10) as client:
            for key in keys:
                await client.set(key, key)
            return [await client.get(key) for key in keys]

    assert asyncio.run(roundtrip()) == [key.encode() for key in keys]


def test_failover_promotes_the_replica_and_the_client_follows(
    cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    primary = cluster.primaries()[0]
    key = key_on(cluster, primary, "failover")
    client.set(key, b"before")
    replica = cluster.replicas_of(primary)[0]
    promoted = cluster.failover(primary)
    assert (promoted.port, promoted.role) == (replica.port, "primary")
    assert promoted.slots == primary.slots
    demoted = next(node for node in cluster.nodes() if node.port == primary.port)
    assert (demoted.role, demoted.primary_id) == ("replica", promoted.node_id)
    assert client.get(key) == b"before"
    assert client.set(key, b"after")
    with redis.Redis.from_url(promoted.url) as direct:
        assert direct.get(key) == b"after"


def test_move_slot_takes_the_keys_and_the_client_follows_moved(
    cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    source = cluster.primaries()[1]
    key = key_on(cluster, source, "reshard")
    slot = cluster.keyslot(key)
    client.set(key, b"moving")
    client.set(f"{{{key}}}:sibling", b"too")
    target = next(p for p in cluster.primaries() if p.port != source.port)
    with pytest.raises(ValueError, match="is not a primary"):
        cluster.move_slot(slot, cluster.replicas_of(target)[0])
    cluster.move_slot(slot, target)
    assert cluster.owner(slot).port == target.port
    with redis.Redis.from_url(target.url) as direct:
        assert direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 2
    with redis.Redis.from_url(source.url) as direct, pytest.raises(MovedError, match=rf":{target.port}$"):
        direct.get(key)
    assert client.get(key) == b"moving"
    assert client.get(f"{{{key}}}:sibling") == b"too"
    cluster.move_slot(slot, source)
    assert cluster.owner(slot).port == source.port
    assert client.get(key) == b"moving"


def test_a_killed_primary_is_replaced_and_rejoins_as_a_replica(
    cluster: RedisClusterProcesses, client: RedisCluster
) -> None:
    primary = cluster.primaries()[2]
    assert primary.pid is not None
    key = key_on(cluster, primary, "crash")
    client.set(key, b"acknowledged")
    cluster.wait_healthy()  # the replica has the key once its link is synced
    replica = cluster.replicas_of(primary)[0]
    promoted = cluster.kill(primary)
    assert not alive(primary.pid)
    assert promoted is not None and (promoted.port, promoted.role) == (replica.port, "primary")
    assert client.set(key, b"after the crash")
    back = cluster.restart(primary)
    assert (back.role, back.primary_id) == ("replica", promoted.node_id)
    assert back.pid is not None and back.pid != primary.pid
    assert client.get(key) == b"after the crash"


def test_losing_a_primary_and_its_replica_is_reported_and_stop_leaves_nothing() -> None:
    with RedisClusterProcesses(node_timeout_ms=2000) as fresh:
        nodes = fresh.nodes()
        pids = fresh.pids
        assert len(pids) == 6 and all(alive(pid) for pid in pids)
        tmpdir = fresh.directory
        assert tmpdir.is_dir()
        primary = fresh.primaries()[0]
        assert fresh.kill(fresh.replicas_of(primary)[0]) is None
        with pytest.raises(ValueError, match="not a primary with a running replica"):
            fresh.failover(primary)
        fresh.timeout = 3
        with pytest.raises(TimeoutError, match="a healthy cluster not reached"):
            fresh.kill(primary)
    assert not any(alive(pid) for pid in pids)
    assert not tmpdir.exists()
    assert fresh.pids == []
    for node in nodes:
        with pytest.raises(OSError), socket.create_connection((node.host, node.port), timeout=1):
            pass


def test_a_node_that_does_not_start_stops_the_others(tmp_path: Path) -> None:
    """The fourth node's binary fails: the three started ones are stopped and the reason names the failure."""
    started = tmp_path / "pids"
    wrapper = tmp_path / "redis-server"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$(wc -l < {started} 2>/dev/null || echo 0)" -ge 3 ]; then exit 3; fi\n'
        f"echo $$ >> {started}\n"
        f'exec {find_redis_server()} "$@"\n'
    )
    wrapper.chmod(0o755)
    provider = RedisClusterProcesses(executable=str(wrapper))
    with pytest.raises(ServerUnavailable, match="redis cluster did not form: redis-server did not start"):
        provider.start()
    pids = [int(line) for line in started.read_text().split()]
    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)
    assert provider.pids == []


def test_the_fixture_factory_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_mw.servers.redis_cluster import redis_cluster_proc

        absent = redis_cluster_proc("/nonexistent/redis-server")

        def test_uses_it(absent):
            raise AssertionError("not reached")
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*mw: redis server unavailable: redis-server not found; tried: /nonexistent/*"])
    result = pytester.runpytest("--mw-require-servers")
    result.assert_outcomes(errors=1)
