"""``[[faults]]`` applied for real with ``--realtime`` (:mod:`simulations.real_faults`): the run's own redis-server and
PostgreSQL processes are stopped, killed and restarted, their pub/sub clients cut, and the checks judge those windows.

Each run is a few agents for 90 simulated seconds at ten times real speed; nothing waits on the wall clock, the runs'
summaries say what was done to which process and what a probe saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simpy.rt
from simhelpers import check, failed, small

from pytest_mw.options import server_options
from pytest_mw.servers.readiness import process_state
from pytest_mw.servers.redis_proc import RedisProcess
from simulations.backends import Backend, open_backend, probe_redis
from simulations.cli import EXIT_ERROR, main
from simulations.measure import LoadTracker
from simulations.real_faults import RealFaults
from simulations.runner import run_scenario
from simulations.scenario import FaultWindow, ScenarioError, parse_scenario

FACTOR = 0.1
"""Wall seconds per simulated second."""

FAULT_CHECKS = ("no_caller_errors", "no_caller_hang", "fault_recovery", "no_stale_reads", "no_db_stampede")


def _scenario(fault: FaultWindow, **sections: dict[str, Any]) -> Any:
    run = {"agents": 6, "nodes": 2, "duration_s": 90.0, "warmup_s": 10.0, "sample_s": 5.0, **sections.pop("run", {})}
    runtime = {"redis_timeout_s": 0.05, "mlt_timeout_s": 0.3, **sections.pop("runtime", {})}
    tasks = {"create_per_agent_s": 0.05, **sections.pop("tasks", {})}
    scenario = small("redis-outage", run=run, runtime=runtime, tasks=tasks, **sections)
    return dataclasses.replace(scenario, faults=(fault,))


@pytest.fixture(scope="module")
def processes() -> Iterator[Backend]:
    """The containers backend on local throwaway processes (the servers the run started)."""
    with open_backend("containers", provider="process") as backend:
        yield backend


def _run(backend: Backend, fault: FaultWindow, overrides: dict[str, Any] | None = None, **sections: Any) -> Any:
    result = run_scenario(_scenario(fault, **sections), backend, realtime=FACTOR, baseline=False, overrides=overrides)
    return result, result["runs"]["cached"]


def _real(cached: dict[str, Any]) -> dict[str, Any]:
    [window] = cached["faults"]["real"]["windows"]
    return window  # type: ignore[no-any-return]


def _l2_hits(cached: dict[str, Any], start: float, end: float) -> int:
    """L2 hits the simulator counted in the samples of ``(start, end]``."""
    return sum(row["l2"] for row in cached["series"] if start < row["t"] <= end)


def _hold(result: dict[str, Any]) -> None:
    for name in FAULT_CHECKS:
        assert check(result, name)["passed"], check(result, name)


def test_l2_down_pauses_the_redis_process_and_the_checks_hold(processes: Backend) -> None:
    result, cached = _run(processes, FaultWindow("l2_down", 20, 15))
    window = _real(cached)
    pid = processes.servers["redis"].pid
    assert window["server"] == window["after"] == f"process pid {pid}"
    assert window["state"] == "T" and window["ping"] == "TimeoutError"  # stopped, and a PING in the window timed out
    assert window["wall_start_s"] > 0 and window["wall_end_s"] > window["wall_start_s"]
    assert window["runtime_errors"]["l2_errors"] > 0  # the runtime saw its L2 time out and degraded
    assert _l2_hits(cached, 25, 35) == 0 < _l2_hits(cached, 35, 90)  # none while stopped; they return after
    _hold(result)


def test_l2_down_kill_restarts_redis_empty_and_the_checks_hold(processes: Backend) -> None:
    before = processes.servers["redis"].pid
    result, cached = _run(processes, FaultWindow("l2_down", 20, 15, mode="kill"))
    window = _real(cached)
    assert window["server"] == f"process pid {before}" and window["state"] == "killed"
    assert window["ping"] == "ConnectionError"  # refused: nothing listens in the window
    assert window["after"] == f"process pid {processes.servers['redis'].pid}" != window["server"]
    assert _l2_hits(cached, 25, 35) == 0 < _l2_hits(cached, 35, 90)  # the empty L2 fills again: hits return
    _hold(result)  # a restart lost L2: the reloads after it are the next generation's, not a stampede


def test_the_stampede_check_judges_a_real_kill_window_both_ways(processes: Backend) -> None:
    run = {"agents": 6, "nodes": 2, "duration_s": 90.0, "warmup_s": 10.0, "sample_s": 5.0}
    scenario = small("hot-key-herd", run=run, runtime={"redis_timeout_s": 0.05, "tier_retry_s": 0})
    scenario = dataclasses.replace(scenario, faults=(FaultWindow("l2_down", 30, 15, mode="kill"),))
    intact = run_scenario(scenario, processes, realtime=FACTOR, baseline=False)
    assert check(intact, "no_db_stampede")["passed"], check(intact, "no_db_stampede")
    broken = run_scenario(
        scenario, processes, realtime=FACTOR, baseline=False, overrides={"stampede_protection": False}
    )
    assert "no_db_stampede" in failed(broken)


def test_a_wiped_l2_ends_every_generation() -> None:
    tracker = LoadTracker()
    tracker.started("k", 0.0)
    tracker.finished("k", 1.0, absent=False, valid_until=100.0)
    assert tracker.started("k", 50.0)  # still cached: a second load is a stampede load
    tracker.finished("k", 51.0, absent=False, valid_until=100.0)
    tracker.wiped()  # a killed Redis came back empty
    assert not tracker.started("k", 60.0)


def test_l2_slow_on_a_real_backend_is_the_seams_delay(processes: Backend) -> None:
    result, cached = _run(processes, FaultWindow("l2_slow", 20, 15, delay_ms=20))
    assert cached["faults"]["slowed_l2_calls"] > 0 and "real" not in cached["faults"]
    _hold(result)


def test_mlt_down_pauses_every_postgres_process_and_loads_resume(processes: Backend) -> None:
    result, cached = _run(
        processes, FaultWindow("mlt_down", 20, 15), items={"write_fraction": 0.0}, tasks={"create_per_agent_s": 0.0}
    )
    window = _real(cached)
    assert window["state"] == "T" and window["server"] == f"process pid {processes.servers['postgres'].pid}"
    assert cached["faults"]["mlt_resumed"][0]["loads_after"] > 0
    assert cached["caller_errors"]["by_window"][0]["reads"] > 0  # misses in the window got MltUnavailable
    _hold(result)


@pytest.mark.parametrize("mode", ["pause", "kill"])
def test_writes_in_doubt_through_a_real_mlt_down_are_settled_by_mlt_versions(processes: Backend, mode: str) -> None:
    _writes_through(processes, mode)


def _writes_through(backend: Backend, mode: str) -> None:
    """Twenty items, each read from the caches (written through, never absent) and written often, so the first Mlt
    calls in the window are writes: each pooled connection carries one to the stopped server and its writer is told
    the write is in doubt (a killed server's connections are seen broken at checkout). A stopped server runs them
    when it resumes, so later writes find Mlt's versions ahead of the simulator's: the truth accepts what the doubted
    writes explain, the writer dropped the cached copies, and the checks hold (before, the next write of such an
    item stopped the run with a RuntimeError)."""
    result, cached = _run(
        backend,
        FaultWindow("mlt_down", 20, 15, mode=mode),
        items={"catalog": 20, "write_fraction": 0.3, "absent_fraction": 0.0},
        tasks={"create_per_agent_s": 0.0},
    )
    doubt = cached["stale"]["in_doubt"]
    assert cached["stale"]["checked"]["item"] > 0
    if mode == "pause":
        assert 1 <= doubt["writes"] < cached["caller_errors"]["writes"], doubt  # the rest found no connection
        assert doubt["landed"] >= 1, doubt  # a later write of the item counted it
    else:
        assert doubt["writes"] == 0 < cached["caller_errors"]["writes"], doubt
    _hold(result)


def _mlt_killed(backend: Backend) -> dict[str, Any]:
    """A read-only run through a PostgreSQL kill: misses in the window got errors, loads resumed after the restart,
    and the checks held. Returns the window's record."""
    result, cached = _run(
        backend,
        FaultWindow("mlt_down", 20, 15, mode="kill"),
        items={"write_fraction": 0.0},
        tasks={"create_per_agent_s": 0.0},
    )
    window = _real(cached)
    assert window["state"] == "killed" and "error" not in window and "undo_error" not in window
    assert cached["faults"]["mlt_resumed"][0]["loads_after"] > 0
    assert cached["caller_errors"]["by_window"][0]["reads"] > 0
    _hold(result)
    return window


def test_mlt_down_kill_breaks_the_connections_and_loads_resume_after_the_restart(processes: Backend) -> None:
    pid = processes.servers["postgres"].pid
    window = _mlt_killed(processes)
    assert window["server"] == f"process pid {pid}" != window["after"]


def test_pubsub_dropped_cuts_the_subscribers_and_the_buses_flush(processes: Backend) -> None:
    result, cached = _run(processes, FaultWindow("pubsub_dropped", 20, 15), items={"write_fraction": 0.05})
    window = _real(cached)
    assert window["cuts"] > 0 and window["killed"] > 0
    assert cached["bus"]["flushes"] > 0  # each node saw its subscription come back and flushed
    _hold(result)


def test_without_the_bus_the_cut_subscribers_leave_stale_reads(processes: Backend) -> None:
    result, _cached = _run(
        processes, FaultWindow("pubsub_dropped", 20, 15), {"pubsub": False}, items={"write_fraction": 0.05}
    )
    assert "no_stale_reads" in failed(result)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (FaultWindow("l2_down", 20, 15), r"l2_down with --realtime on redis stops the Redis the run started"),
        (FaultWindow("mlt_down", 20, 15), r"mlt_down with --realtime on redis stops the PostgreSQL the run started"),
        (FaultWindow("pubsub_dropped", 20, 15), r"would cut every subscriber, not only the run's"),
    ],
)
def test_a_real_fault_on_a_given_server_is_refused(fault: FaultWindow, message: str) -> None:
    backend = Backend("redis", "redis://127.0.0.1:1/0", None, "redis: given")
    with pytest.raises(ScenarioError, match=message):
        run_scenario(_scenario(fault), backend, realtime=FACTOR, baseline=False)


def test_a_mode_is_refused_for_other_kinds_and_names() -> None:
    for fault, message in (
        ({"kind": "l2_slow", "at_s": 1, "for_s": 1, "delay_ms": 5, "mode": "pause"}, "applies to kind = 'l2_down'"),
        ({"kind": "l2_down", "at_s": 1, "for_s": 1, "mode": "stop"}, "mode = 'stop': one of 'pause', 'kill'"),
    ):
        with pytest.raises(ScenarioError, match=message):
            parse_scenario({"name": "x", "runtime": {"tier_retry_s": 0}, "faults": [fault]}, "x.toml")


@pytest.fixture(scope="module")
def containers(pytestconfig: pytest.Config) -> Iterator[Backend]:
    """The containers backend on the engine's containers (CI's container step: ``--mw-server-provider container``)."""
    if server_options(pytestconfig).provider != "container":
        pytest.skip("container tests run with --mw-server-provider container")
    with open_backend("containers", provider="container") as backend:
        yield backend


def test_l2_down_pauses_the_redis_container(containers: Backend) -> None:
    result, cached = _run(containers, FaultWindow("l2_down", 20, 15))
    window = _real(cached)
    assert window["state"] == "paused" and window["ping"] == "TimeoutError"
    _hold(result)


def test_l2_down_kill_restarts_the_redis_container_empty(containers: Backend) -> None:
    result, cached = _run(containers, FaultWindow("l2_down", 20, 15, mode="kill"))
    assert _real(cached)["ping"] == "ConnectionError"
    assert _l2_hits(cached, 25, 35) == 0 < _l2_hits(cached, 35, 90)
    _hold(result)


def test_mlt_down_pauses_the_postgres_container(containers: Backend) -> None:
    result, cached = _run(
        containers, FaultWindow("mlt_down", 20, 15), items={"write_fraction": 0.0}, tasks={"create_per_agent_s": 0.0}
    )
    assert _real(cached)["state"] == "paused" and cached["faults"]["mlt_resumed"][0]["loads_after"] > 0
    _hold(result)


def test_writes_in_doubt_through_a_paused_postgres_container(containers: Backend) -> None:
    _writes_through(containers, "pause")


def test_mlt_down_kill_restarts_the_postgres_container_and_loads_resume(containers: Backend) -> None:
    server = containers.servers["postgres"]
    dsn = server.url
    _mlt_killed(containers)
    assert server.url == dsn and server.status == "running"


def test_pubsub_dropped_cuts_the_container_redis_subscribers(containers: Backend) -> None:
    result, cached = _run(containers, FaultWindow("pubsub_dropped", 20, 15), items={"write_fraction": 0.05})
    assert _real(cached)["killed"] > 0 and cached["bus"]["flushes"] > 0
    _hold(result)


def test_the_cli_refuses_a_process_fault_on_a_given_redis_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RedisProcess() as server:
        args = ["run", "redis-outage-realtime", "--backend", "redis", "--redis-url", server.url, "--realtime", "0.1"]
        assert main([*args, "--out", str(tmp_path), "--quiet"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "l2_down with --realtime on redis stops the Redis the run started" in err
    assert "Traceback" not in err


def test_a_run_stopped_inside_a_window_leaves_the_server_answering(processes: Backend) -> None:
    env = simpy.rt.RealtimeEnvironment(factor=FACTOR, strict=False)
    faults = RealFaults(env, [FaultWindow("l2_down", 0, 1000)], processes, FACTOR)
    faults.start()
    env.run(until=1)  # inside the window: the server is stopped
    assert process_state(processes.servers["redis"].pid) == "T"
    [record] = faults.records
    assert "wall_end_s" not in record
    faults.close()  # what run_once does when the run ends or raises
    assert probe_redis(processes.redis_url or "", timeout_s=1.0) is None
    assert record["open_at_end"] is True  # the report says the run ended inside it, with its wall span
    assert record["wall_end_s"] >= record["wall_start_s"]
    assert record["behind_s"] == pytest.approx(record["wall_end_s"] - 1 * FACTOR, abs=1e-3)


def test_overlapping_real_windows_on_one_server_are_refused(processes: Backend) -> None:
    """A pause and a subscriber cut of one Redis would undo each other (and the cut would block the clock)."""
    env = simpy.rt.RealtimeEnvironment(factor=FACTOR, strict=False)
    overlapping = [FaultWindow("l2_down", 20, 15), FaultWindow("pubsub_dropped", 30, 10)]
    with pytest.raises(ScenarioError, match="overlap at 30 s on the same Redis"):
        RealFaults(env, overlapping, processes, FACTOR)
    apart = [FaultWindow("l2_down", 20, 15), FaultWindow("pubsub_dropped", 40, 10), FaultWindow("mlt_down", 25, 5)]
    RealFaults(env, apart, processes, FACTOR)  # other windows, or another server, are fine
