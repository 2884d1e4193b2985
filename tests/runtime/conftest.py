"""Fixtures the L2 behaviour tests and the L2 seam tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mw.tiers.l2 import RedisTier


@pytest.fixture
def tier(backend: str, request: pytest.FixtureRequest) -> Iterator[RedisTier]:
    """A tier on the backend with a long retry window: "marked down" shows as a failing next call."""
    if backend == "embedded":
        url, namespace = None, f"l2t{uuid.uuid4().hex[:10]}"
    else:  # the test's namespace: the one a least-privilege ACL user may touch (redis-tls)
        url, namespace = str(request.getfixturevalue("mw_redis_url")), request.getfixturevalue("mw_namespace")
    t = RedisTier(url, namespace=namespace, timeout_s=0.5, retry_s=60.0)
    yield t
    keys = list(t.client.scan_iter(match=t.phys("*")))
    if keys:
        t.client.delete(*keys)
    t.close()
