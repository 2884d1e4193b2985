"""``mw_redis_cluster`` and ``mw_redis_sentinel`` as a user meets them: plugin fixtures yielding the started
providers, usable with redis-py's cluster and Sentinel clients (the providers' own tests are test_servers_*)."""

from __future__ import annotations

import pytest
from plugin_nested import run

pytestmark = pytest.mark.mw_real_servers


def test_cluster_and_sentinel_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

def test_cluster(mw_redis_cluster, request):
    assert request.node.get_closest_marker("mw_real_servers") is not None
    client = RedisCluster.from_url(mw_redis_cluster.spec.url)
    for n in range(20):
        client.set(f"mwt:k{n}", n)
    assert sorted(int(client.get(f"mwt:k{n}")) for n in range(20)) == list(range(20))
    assert len(mw_redis_cluster.primaries()) == 3
    client.close()

def test_sentinel(mw_redis_sentinel):
    sentinel = Sentinel(mw_redis_sentinel.sentinels, socket_timeout=5)
    primary = sentinel.master_for(mw_redis_sentinel.master_name, socket_timeout=5)
    primary.set("mwt:s", b"1")
    assert primary.get("mwt:s") == b"1"
    primary.close()
"""
    )
    run(pytester, "--mw-require-servers").assert_outcomes(passed=2)
