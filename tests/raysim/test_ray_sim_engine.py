"""``simulations.ray_engine``: a scenario over Ray actors gives the SimPy engine's summary, and its verdict sees faults.

Short scenarios at high speed on the session's local Ray cluster, real Redis and a real PostgreSQL server (each run
gets its own key namespace and database from the simulator's backend).
"""

from __future__ import annotations

from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'pytest-mw[ray]'")
pytest.importorskip("simpy", reason="the simulator needs simpy: pip install 'pytest-mw[sim]'")

from simulations.backends import Backend  # noqa: E402
from simulations.ray_engine import run_on_ray  # noqa: E402
from simulations.runner import RunOptions, run_once  # noqa: E402
from simulations.scenario import load_scenario  # noqa: E402
from simulations.verdict import judge  # noqa: E402

pytestmark = pytest.mark.mw_real_servers


@pytest.fixture
def backend(ray_cluster: Any, mw_redis_server: Any, mw_postgres_server: Any) -> Backend:
    return Backend("redis", mw_redis_server.url, mw_postgres_server.url, "test servers")


def small(**run: Any) -> Any:
    """staging-synthetic, shrunk: a few agents for two simulated minutes, with writes and tasks to judge."""
    scenario = load_scenario("staging-synthetic")
    return scenario.with_overrides(
        run={"agents": 6, "duration_s": 120.0, "warmup_s": 20.0, "sample_s": 10.0, "baseline": False, **run},
        items={"write_fraction": 0.05},
        tasks={"create_per_agent_s": 0.05},
        heartbeat={"every_s": 10.0},
    )


DATA_KEYED = ("task_ttls", "loads_per_expiry_histogram")
"""Dicts keyed by what happened (task statuses seen, histogram buckets), not fields."""


def missing_fields(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Fields of ``theirs`` (the SimPy engine's summary) that ``ours`` lacks, recursively."""
    if not isinstance(theirs, dict):
        return []
    out = []
    for key, value in theirs.items():
        if key not in ours:
            out.append(f"{where}{key}")
        elif key not in DATA_KEYED:
            out += missing_fields(ours[key], value, f"{where}{key}.")
    return out


def test_ray_engine_gives_the_simpy_engines_summary_and_verdict(backend: Backend) -> None:
    scenario = small()
    seen: list[tuple[str, float]] = []
    summary = run_on_ray(
        scenario, backend, RunOptions("cached"), lambda label, now, *_: seen.append((label, now)), speed=20
    )
    reference = run_once(scenario, Backend("embedded"), RunOptions("cached"))

    engine = summary.pop("engine")
    summary.pop("log_lines"), reference.pop("log_lines")
    assert missing_fields(summary, reference) == []  # the report and the verdict read the same fields
    assert set(summary) == set(reference)
    assert set(summary["series"][0]) == set(reference["series"][0])
    assert len(engine["shards"]) == 2 and engine["ray_nodes"] == 1
    assert {"max_lag_s", "kept_up", "invalidation_lag_ms", "node_cache"} <= set(engine)
    assert seen and seen[-1] == ("cached", 120.0)

    assert summary["agents"]["started"] >= 6
    assert summary["requests"]["total"] > 300
    assert summary["tasks"]["created"] > 0 and summary["requests"]["outcomes"]["writes"] > 0
    assert summary["stale"]["checked"]["item"] > 0  # reads of written items, judged across processes
    verdict = {c.name: c for c in judge(summary, scenario.targets).checks}
    for name in ("no_double_prefix", "heartbeats", "l0_bounded", "no_db_stampede", "no_stale_reads"):
        assert verdict[name].passed, verdict[name]
    # A read the node actor does not answer within MW_RAY_L1_TIMEOUT_S (a busy machine) goes on to L2 by
    # design: the node cache must serve, not never time out.
    assert engine["node_cache"]["reads"] > 2 * engine["node_cache"]["read_errors"]


def test_ray_engine_verdict_catches_a_double_prefix_writer(backend: Backend) -> None:
    scenario = small(agents=4, duration_s=60.0).with_overrides(defects={"double_prefix_writer": True, "every_s": 10.0})
    summary = run_on_ray(scenario, backend, RunOptions("cached"), speed=20)
    verdict = {c.name: c for c in judge(summary, scenario.targets).checks}
    assert not verdict["no_double_prefix"].passed
    assert summary["double_prefix"]["l2_keys"] > 0 and summary["double_prefix"]["log_lines"] > 0


def test_ray_engine_refuses_an_unshared_backend(ray_cluster: Any) -> None:
    with pytest.raises(ValueError, match="needs a Redis and an Mlt every shard reaches"):
        run_on_ray(small(), Backend("embedded"), RunOptions("cached"))


def test_ray_engine_refuses_faults_naming_their_kinds() -> None:
    """Faults run in simulated time on the SimPy engine: refused before any shard starts (no server is asked)."""
    import dataclasses

    from simulations.scenario import FaultWindow, ScenarioError

    scenario = dataclasses.replace(
        small(), faults=(FaultWindow("mlt_down", 10, 5), FaultWindow("l2_slow", 20, 5, delay_ms=50))
    )
    unreachable = Backend("redis", "redis://127.0.0.1:1/0", "postgresql://127.0.0.1:1/x", "nowhere")
    with pytest.raises(ScenarioError, match=r"\[\[faults\]\] \(l2_slow, mlt_down\) are applied in simulated time"):
        run_on_ray(scenario, unreachable, RunOptions("cached"))
