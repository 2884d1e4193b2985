"""A short run on a real Redis and a real PostgreSQL (the plugin's server fixtures): the verdict passes and every
layer was exercised (leases in Redis, loads from PostgreSQL, its own database per run)."""

from __future__ import annotations

from typing import Any

from simhelpers import failed, small

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
