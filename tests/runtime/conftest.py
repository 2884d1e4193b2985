"""Fixtures the L2 behaviour tests and the L2 seam tests share."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from mw import MwConfig
from mw.tiers.l2 import RedisTier
from mw.tiers.topology import RedisTopology


@pytest.fixture
def tier(backend: str, request: pytest.FixtureRequest) -> Iterator[RedisTier]:
    """A tier on the backend with a long retry window: "marked down" shows as a failing next call."""
    if backend == "embedded":
        t = RedisTier(None, namespace=f"l2t{uuid.uuid4().hex[:10]}", timeout_s=0.5, retry_s=60.0)
    else:  # the test's namespace (the one a least-privilege ACL user may touch) on the test's topology
        settings = request.getfixturevalue("l2_settings")
        config = MwConfig.from_env({}, namespace=request.getfixturevalue("mw_namespace"), **settings)
        topology = dataclasses.replace(RedisTopology.of(config), timeout_s=0.5, connect_timeout_s=0.5)
        t = RedisTier(config.redis_url, namespace=config.namespace, retry_s=60.0, topology=topology)
    yield t
    if t.embedded:  # a real server's keys go with mw_redis_url's teardown (on every node of a cluster)
        keys = list(t.client.scan_iter(match=t.prefix + "*"))
        if keys:
            t.client.delete(*keys)
    t.close()
