"""The sentinel provider runs a real primary, replica and three sentinels that redis-py's ``Sentinel`` client uses,
fails over on request and on a crash, and leaves no process or directory behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from redis.sentinel import Sentinel

from pytest_mw.servers import ServerUnavailable
from pytest_mw.servers.readiness import wait_until_ready
from pytest_mw.servers.redis_proc import find_redis_server
from pytest_mw.servers.redis_sentinel import RedisSentinelGroup, redis_sentinel_proc

group = redis_sentinel_proc(scope="module")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def client(group: RedisSentinelGroup) -> Sentinel:
    return Sentinel(group.sentinels, socket_timeout=10)


def test_the_sentinels_report_the_primary_and_its_replica_follows(group: RedisSentinelGroup) -> None:
    assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", group.spec.url)
    assert group.spec.url == group.url
    assert group.master_name == "mw-primary"
    assert len(group.sentinels) == 3
    assert group.sentinel_hosts == ",".join(f"127.0.0.1:{port}" for _, port in group.sentinels)
    roles = sorted(node.role for node in group.nodes())
    assert roles == ["primary", "replica"]
    assert len(group.pids) == 5
    sentinel = client(group)
    assert sentinel.discover_master(group.master_name) == group.primary().address
    primary = sentinel.master_for(group.master_name)
    assert primary.set("mwt:sentinel:greeting", b"hello")
    replica = sentinel.slave_for(group.master_name)
    wait_until_ready(lambda: _expect(replica.get("mwt:sentinel:greeting"), b"hello"), 30)


def _expect(actual: object, expected: object) -> None:
    if actual != expected:
        raise AssertionError(f"{actual!r} != {expected!r}")


def test_failover_switches_the_primary_and_writes_follow(group: RedisSentinelGroup) -> None:
    old = group.primary()
    new = group.failover()
    assert new.port != old.port and new.role == "primary"
    sentinel = client(group)
    assert sentinel.discover_master(group.master_name) == new.address
    primary = sentinel.master_for(group.master_name)
    assert primary.set("mwt:sentinel:after-failover", b"written")
    assert primary.get("mwt:sentinel:after-failover") == b"written"
    assert next(node for node in group.nodes() if node.port == old.port).role == "replica"
    assert group.failover().port == old.port  # the demoted node is a healthy replica: a second failover works


def test_a_crashed_primary_is_failed_over_and_rejoins_as_a_replica(group: RedisSentinelGroup) -> None:
    old = group.primary()
    assert old.pid is not None
    new = group.kill_primary()
    assert not alive(old.pid)
    assert new.port != old.port and new.role == "primary"
    sentinel = client(group)
    assert sentinel.discover_master(group.master_name) == new.address
    assert sentinel.master_for(group.master_name).set("mwt:sentinel:after-crash", b"written")
    with pytest.raises(TimeoutError, match="a ready sentinel group not reached within 2 s"):
        group.wait_ready(timeout=2)
    with pytest.raises(ValueError, match="no running replica"):
        group.failover()
    back = group.restart(next(node for node in group.nodes() if node.role == "down"))
    assert back.port == old.port and back.role == "replica"
    group.wait_ready()


def test_stop_leaves_no_process_and_no_directory() -> None:
    with RedisSentinelGroup(master_name="mw-fresh") as fresh:
        pids = fresh.pids
        assert len(pids) == 5 and all(alive(pid) for pid in pids)
        directory = fresh.directory
        assert (directory / "sentinel0" / "sentinel.conf").is_file()
    assert not any(alive(pid) for pid in pids)
    assert not directory.exists()
    assert fresh.pids == []


def test_a_sentinel_that_does_not_start_stops_the_data_nodes(tmp_path: Path) -> None:
    started = tmp_path / "pids"
    wrapper = tmp_path / "redis-server"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = --sentinel ] && exit 3; done\n'
        f"echo $$ >> {started}\n"
        f'exec {find_redis_server()} "$@"\n'
    )
    wrapper.chmod(0o755)
    provider = RedisSentinelGroup(executable=str(wrapper))
    with pytest.raises(ServerUnavailable, match="redis sentinel group did not come up: redis-server did not start"):
        provider.start()
    pids = [int(line) for line in started.read_text().split()]
    assert len(pids) == 2
    assert not any(alive(pid) for pid in pids)


def test_the_fixture_factory_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_mw.servers.redis_sentinel import redis_sentinel_proc

        absent = redis_sentinel_proc("/nonexistent/redis-server")

        def test_uses_it(absent):
            raise AssertionError("not reached")
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*mw: redis server unavailable: redis-server not found; tried: /nonexistent/*"])
