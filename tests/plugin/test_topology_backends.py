"""``--mw-backend redis-cluster`` and ``redis-sentinel`` as a user meets them (nested runs, each starting its own
throwaway topology): the option and the marker select them, a ``redis`` marker follows the run's variant, ``mw``
reaches the topology (a write is visible to its admin client under ``mw.l2.phys(key)``), ``mw_l2_settings`` names
it, the namespace is cleaned on every primary, the header names it, and a misspelt name is an error naming them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from plugin_nested import run
from redis.cluster import RedisCluster

from pytest_mw.servers.clients import RedisNamespace
from pytest_mw.servers.redis_cluster import RedisClusterProcesses

pytestmark = pytest.mark.mw_real_servers

PROCESSES = ["--mw-server-provider", "process", "--mw-require-servers", "--mw-mlt", "sqlite"]


def test_redis_cluster_runs_the_fixtures_on_the_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
import redis
from redis.cluster import RedisCluster

SEEN = {}

def test_plain(mw, mw_backend, mw_redis, mw_redis_url, mw_l2_settings, mw_namespace, mw_redis_cluster):
    assert mw_backend == "redis-cluster"
    assert mw_l2_settings == {"redis_url": mw_redis_url, "redis_cluster": True}
    assert mw.config.redis_cluster and mw.l2.slotted
    assert isinstance(mw_redis, RedisCluster)
    mw.set_global_item_typed("doc", "s", "1", {"v": 1})
    key = mw.l2.phys("global:item:doc:s:1")
    assert key == mw_namespace + ":{global:item:doc:s:1}"
    assert mw_redis.exists(key) == 1
    for i in range(64):  # keys in every primary's slots, left for the teardown
        mw_redis.set(f"{mw_namespace}:planted:{i}", 1)
    SEEN["ns"] = mw_namespace

def test_cleaned_on_every_primary(mw_redis_cluster):
    assert SEEN["ns"]
    for primary in mw_redis_cluster.primaries():
        with redis.Redis.from_url(primary.url) as node:
            assert list(node.scan_iter(match=SEEN["ns"] + ":*")) == [], primary.port

@pytest.mark.mw_backend("redis", mlt="sqlite")
def test_marked_redis(mw_backend, mw_config):
    assert mw_backend == "redis-cluster" and mw_config.redis_cluster

@pytest.mark.mw_backend("fakeredis")
def test_marked_fakeredis(mw_config, mw_l2_settings):
    assert mw_config.redis_url is None and not mw_config.redis_cluster and mw_l2_settings == {}
"""
    )
    result = run(pytester, "--mw-backend", "redis-cluster", *PROCESSES)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["mw backend: L2 redis-cluster (a Redis Cluster of 6 redis-server processes*"])


def test_redis_sentinel_runs_the_fixtures_on_the_group(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import redis

def test_plain(mw, mw_backend, mw_redis, mw_redis_url, mw_l2_settings, mw_namespace, mw_redis_sentinel):
    group = mw_redis_sentinel
    assert mw_backend == "redis-sentinel"
    assert mw_l2_settings == {"redis_sentinels": group.sentinel_hosts, "redis_sentinel_master": group.master_name}
    assert mw.config.redis_sentinels == group.sentinel_hosts and mw.config.redis_url is None
    assert mw_redis_url == group.url  # the primary now, for raw inspection
    assert type(mw_redis) is redis.Redis
    mw.set_global_item_typed("doc", "s", "1", {"v": 1})
    assert mw_redis.exists(mw.l2.phys("global:item:doc:s:1")) == 1
    assert mw_redis.execute_command("ROLE")[0] in (b"master", "master")
"""
    )
    result = run(pytester, "--mw-backend", "redis-sentinel", *PROCESSES)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mw backend: L2 redis-sentinel (a Sentinel group of redis-server processes*"])


def test_a_marker_picks_a_topology_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mw_backend("redis-cluster", "redis-sentinel", mlt="sqlite")
def test_both(mw_backend, mw, mw_l2_settings):
    assert mw.config.redis_cluster == (mw_backend == "redis-cluster")
    assert (mw.config.redis_sentinels is not None) == (mw_backend == "redis-sentinel")
    mw.set_global_item_typed("doc", "s", "1", 1)
    assert mw.get_item_typed("doc", "s", "1") == 1
"""
    )
    result = run(pytester, "-v", "--mw-server-provider", "process", "--mw-require-servers")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_both?redis-cluster?*PASSED*", "*test_both?redis-sentinel?*PASSED*"])


@pytest.mark.parametrize(
    ("args", "marker", "stream", "message"),
    [
        pytest.param(
            ["--mw-backend", "redis-clustr"],
            "",
            "stderr",
            "*argument --mw-backend: invalid choice: 'redis-clustr'*redis-cluster*redis-sentinel*",
            id="option",
        ),
        pytest.param(
            [],
            "@pytest.mark.mw_backend('redis-sentinal')",
            "stdout",
            "*mw_backend('redis-sentinal'): name one or more of fakeredis, redis, redis-tls, redis-cluster, "
            "redis-sentinel",
            id="marker",
        ),
    ],
)
def test_a_misspelt_topology_is_an_error_naming_the_choices(
    pytester: pytest.Pytester, args: list[str], marker: str, stream: str, message: str
) -> None:
    pytester.makepyfile(f"import pytest\n\n{marker}\ndef test_x(mw):\n    pass\n")
    result = run(pytester, *args)
    assert result.ret != pytest.ExitCode.OK
    getattr(result, stream).fnmatch_lines([message])


@pytest.fixture
def planted(mw_redis_cluster: RedisClusterProcesses) -> Iterator[tuple[str, RedisCluster]]:
    """A namespace with keys in every primary's slots, and a cluster client to look at them."""
    namespace = f"mwt:{uuid.uuid4().hex}:"
    with RedisCluster.from_url(mw_redis_cluster.url) as client:
        for i in range(64):
            client.set(f"{namespace}k{i}", i)
        assert len({client.get_node_from_key(f"{namespace}k{i}").name for i in range(64)}) == 3
        yield namespace, client
        leftover = [
            key for node in client.get_primaries() for key in client.scan_iter(namespace + "*", target_nodes=node)
        ]
        if leftover:
            client.delete(*leftover)


def test_cleanup_scans_every_primary_of_a_cluster(
    mw_redis_cluster: RedisClusterProcesses, planted: tuple[str, RedisCluster]
) -> None:
    namespace, client = planted
    assert RedisNamespace(mw_redis_cluster.url, namespace, cluster=True).cleanup() == 64
    assert all(client.exists(f"{namespace}k{i}") == 0 for i in range(64))


def test_cleanup_of_one_node_would_leave_the_other_primaries_keys(
    mw_redis_cluster: RedisClusterProcesses, planted: tuple[str, RedisCluster]
) -> None:
    """The check above can fail: cleaning a cluster as one server sees one node's keys only, and that node refuses
    to UNLINK keys of several slots at once."""
    namespace, client = planted
    with pytest.raises(redis.exceptions.ResponseError, match="same slot"):
        RedisNamespace(mw_redis_cluster.url, namespace).cleanup()
    assert sum(client.exists(f"{namespace}k{i}") for i in range(64)) == 64
