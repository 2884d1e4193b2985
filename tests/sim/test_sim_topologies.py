"""``--backend redis-sentinel`` and ``redis-cluster``: the simulator on a Sentinel group and on a Redis Cluster of local
processes, with the topology faults applied for real (``l2_failover``: the primary SIGKILLed and its replica promoted;
``l2_reshard``: slots moved with their keys). Each run is a few agents for 90 simulated seconds at ten times real
speed; the runs' summaries say what was killed, what was promoted, how many slots moved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simhelpers import check, small

from simulations.backends import Backend, open_backend
from simulations.cli import EXIT_ERROR, main
from simulations.runner import run_scenario
from simulations.scenario import FaultWindow, ScenarioError

pytestmark = pytest.mark.mw_real_servers

FACTOR = 0.1
CHECKS = ("no_caller_errors", "no_caller_hang", "no_stale_reads", "no_db_stampede", "telemetry_truth")


def _scenario(*faults: FaultWindow) -> Any:
    run = {"agents": 6, "nodes": 2, "duration_s": 90.0, "warmup_s": 10.0, "sample_s": 5.0}
    runtime = {"redis_timeout_s": 0.25, "mlt_timeout_s": 0.3}
    scenario = small("redis-outage", run=run, runtime=runtime, tasks={"create_per_agent_s": 0.05})
    return dataclasses.replace(scenario, faults=faults)


@pytest.fixture(scope="module")
def sentinel() -> Iterator[Backend]:
    with open_backend("redis-sentinel") as backend:
        yield backend


@pytest.fixture(scope="module")
def cluster() -> Iterator[Backend]:
    with open_backend("redis-cluster") as backend:
        yield backend


def _hold(result: dict[str, Any]) -> None:
    for name in CHECKS:
        assert check(result, name)["passed"], check(result, name)


def test_a_sentinel_failover_mid_run_and_the_checks_hold(sentinel: Backend) -> None:
    group = sentinel.servers["redis"]
    old = group.primary_address()
    result = run_scenario(_scenario(FaultWindow("l2_failover", 20, 30)), sentinel, realtime=FACTOR, baseline=False)
    [window] = result["runs"]["cached"]["faults"]["real"]["windows"]
    assert window["killed"] == "{}:{}".format(*old) and window["promoted"] != window["killed"], window
    assert group.primary_address() != old, "the replica took over"
    assert window["runtime_errors"]["l2_errors"] > 0, "the runtime saw its primary die"
    _hold(result)
    assert result["runs"]["cached"]["config"]["redis_sentinels"]["value"] == group.sentinel_hosts


def test_slots_moving_and_a_primary_dying_on_a_cluster_and_the_checks_hold(cluster: Backend) -> None:
    faults = (FaultWindow("l2_reshard", 15, 25), FaultWindow("l2_failover", 50, 25))
    result = run_scenario(_scenario(*faults), cluster, realtime=FACTOR, baseline=False)
    reshard, failover = result["runs"]["cached"]["faults"]["real"]["windows"]
    assert reshard["slots_moved"] > 0 and "error" not in reshard, reshard
    assert reshard["runtime_errors"]["l2_errors"] == 0, "MOVED and ASK never reach the runtime's error count"
    assert failover["promoted"] != failover["killed"] and "error" not in failover, failover
    _hold(result)


def test_a_failover_that_outlasts_its_window_holds_it_open_until_the_promotion() -> None:
    """A 2 s window is 0.2 s of wall time, far less than a promotion takes: until the replica serves, L2 is
    unreachable for the killed primary's keys and nodes load them without a lease, so the checks' outage lasts
    until the promotion (plus the recovery bound), not the declared end (a stampede counted there was no defect).
    A cluster of its own: the module's has had slots moved and nodes restarted empty by the tests before."""
    with open_backend("redis-cluster") as cluster:
        result = run_scenario(_scenario(FaultWindow("l2_failover", 20, 2)), cluster, realtime=FACTOR, baseline=False)
    [window] = result["runs"]["cached"]["faults"]["real"]["windows"]
    assert "error" not in window and window["promoted"] != window["killed"], window
    assert window["held_open_until_s"] > window["end_s"], window
    _hold(result)


def test_topology_faults_need_their_topology_and_real_time(tmp_path: Path) -> None:
    refused = pytest.raises(ScenarioError, match="simulated time has one embedded Redis")
    with refused, open_backend("embedded") as embedded:
        run_scenario(_scenario(FaultWindow("l2_failover", 20, 10)), embedded, baseline=False)
    scenario = tmp_path / "reshard.toml"
    scenario.write_text((Path(__file__).parents[2] / "simulations/scenarios/cluster-reshard.toml").read_text())
    assert main(["run", str(scenario), "--backend", "redis-sentinel", "--realtime", "0.1", "--quiet"]) == EXIT_ERROR
