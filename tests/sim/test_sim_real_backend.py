"""A short run on a real Redis and a real PostgreSQL (the plugin's server fixtures): the verdict passes and every
layer was exercised (leases in Redis, loads from PostgreSQL, its own database per run)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
from simhelpers import failed, small

from mw.tiers.embedded import embedded_client, embedded_server
from simulations.backends import Backend
from simulations.runner import run_scenario


def test_hot_key_herd_on_real_servers(mw_redis_url: Any, mw_postgres_dsn: str) -> None:
    backend = Backend("redis", str(mw_redis_url), str(mw_postgres_dsn), "test servers")
    scenario = small("hot-key-herd", run={"agents": 8, "duration_s": 120.0, "warmup_s": 30.0})
    result = run_scenario(scenario, backend, baseline=True)
    assert result["verdict"]["passed"], failed(result)
    cached = result["runs"]["cached"]
    assert cached["loads"]["loads"] > 0
    # One cluster per run: herd members of a key wait on its single flight; its leader holds the Redis lease.
    assert cached["requests"]["outcomes"]["coalesced"] > 0, "herd members should have waited for one load"
    assert result["mlt"]["queries_baseline"] > result["mlt"]["queries_cached"] > 0
    assert not result["deterministic"]


def test_task_churn_on_real_servers(mw_redis_url: Any, mw_postgres_dsn: str) -> None:
    backend = Backend("redis", str(mw_redis_url), str(mw_postgres_dsn), "test servers")
    scenario = small("task-churn", run={"agents": 6, "duration_s": 90.0, "warmup_s": 20.0})
    result = run_scenario(scenario, backend, baseline=False)
    assert result["verdict"]["passed"], failed(result)
    assert result["runs"]["cached"]["task_ttls"]["running"]["max_l2_life_s"] <= 30


@pytest.mark.parametrize("name", ["embedded", "redis"])
def test_a_run_leaves_no_key_behind(name: str, request: pytest.FixtureRequest) -> None:
    """Each run's namespace is deleted after it, on the embedded server (it outlives the run) as on a real one."""
    if name == "embedded":
        backend, client = Backend("embedded"), embedded_client(embedded_server())
    else:
        url, dsn = (str(request.getfixturevalue(f)) for f in ("mw_redis_url", "mw_postgres_dsn"))
        backend, client = Backend("redis", url, dsn, "test servers"), redis.Redis.from_url(url)
    mine = f"mwsim-{os.getpid()}-*"
    before = set(client.scan_iter(match=mine, count=1000))
    result = run_scenario(small("staging-synthetic", run={"agents": 4, "duration_s": 60.0, "warmup_s": 10.0}), backend)
    assert result["runs"]["cached"]["requests"]["total"] > 0
    assert set(client.scan_iter(match=mine, count=1000)) <= before
