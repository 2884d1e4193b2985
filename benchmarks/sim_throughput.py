"""Simulated cache requests per wall second on the embedded backend, against SimPy's raw event rate on this machine.

Every simulated request is at least one SimPy event (the agent's think-time timeout) plus a call into the real
runtime, so SimPy's raw rate is the ceiling; the ratio says how much of it the runtime and the measurements take.

* ``simpy raw``: 1,000 processes x N timeouts doing nothing else (the anchor figure's second line).
* ``hit path``: 100 agents reading 50 items that fit their L0, no writes or tasks (what the simulator and the
  runtime's L0 hit cost per request, once the L0s are warm).
* ``staging-synthetic``: the bundled scenario with 100 agents, as shipped (cold starts, L1/L2 reads through
  fakeredis, Mlt loads, writes, tasks, churn: what a real run costs).

Target (issue 10): 0.10 x SimPy's raw event rate for 100 agents on staging-synthetic, measured in the same run (a
ratio, so the figure does not move with the machine).

Each rate is printed twice: per wall second (what a user waits) and per CPU second of this process
(``time.process_time``). On a machine that other jobs share, a wall second is whatever share of a core the
scheduler gave, which differs between a 0.3 s SimPy anchor and a 20 s run; a CPU second is steadier, but still
worth less while another job runs on the same core's other hyperthread. The raw rate is the median of five samples
taken around the runs (before, between, after), not one sample. To compare two versions on such a machine, run
them side by side at the same time (docs/simulator.md, "Speed").

    python benchmarks/sim_throughput.py [--duration 3600] [--agents 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

try:
    import simulations  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simpy

from simulations.backends import Backend
from simulations.runner import RunOptions, run_once
from simulations.scenario import load_scenario

TARGET_RATIO = 0.10


class Rate(NamedTuple):
    """Events or requests per second: of wall time, and of this process's CPU time."""

    wall: float
    cpu: float


def simpy_raw_rate(processes: int = 1000, timeouts: int = 300) -> Rate:
    env = simpy.Environment()

    def proc(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        for _ in range(timeouts):
            yield env.timeout(1)

    for _ in range(processes):
        env.process(proc(env))
    started, cpu = time.perf_counter(), time.process_time()
    env.run()
    events = processes * timeouts
    return Rate(events / (time.perf_counter() - started), events / max(1e-9, time.process_time() - cpu))


def median_rate(samples: list[Rate]) -> Rate:
    return Rate(statistics.median(r.wall for r in samples), statistics.median(r.cpu for r in samples))


def scenario_rate(name: str, agents: int, duration: float, **sections: dict[str, object]) -> tuple[Rate, dict]:
    """The run's requests per wall second of its simulation (the runner's figure), and per CPU second of the whole
    call (seeding and the summary included: a little lower than the simulation's own)."""
    scenario = load_scenario("staging-synthetic").with_overrides(
        run={"agents": agents, "duration_s": duration, "warmup_s": min(300.0, duration / 4)}, **sections
    )
    cpu = time.process_time()
    summary = run_once(scenario, Backend("embedded"), RunOptions(label=name))
    cpu = time.process_time() - cpu
    return Rate(summary["wall"]["requests_per_s"], summary["requests"]["total"] / max(1e-9, cpu)), summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3600.0, help="simulated seconds of staging-synthetic")
    args = parser.parse_args()

    samples = [simpy_raw_rate(), simpy_raw_rate()]
    hit_rate, _ = scenario_rate(
        "hit-path",
        args.agents,
        args.duration,
        items={"catalog": 50, "write_fraction": 0.0, "absent_fraction": 0.0, "drift_every_s": 0.0},
        tasks={"enabled": False},
        churn={"every_s": 0.0},
        bursts={"every_s": 0.0},
    )
    samples.append(simpy_raw_rate())
    rate, summary = scenario_rate("staging-synthetic", args.agents, args.duration)
    samples += [simpy_raw_rate(), simpy_raw_rate()]
    raw = median_rate(samples)
    print(
        f"simpy raw: {raw.wall:>12,.0f} events/s wall, {raw.cpu:,.0f} per CPU s "
        "(1,000 processes x timeouts; median of 5)"
    )
    print(
        f"hit path:  {hit_rate.wall:>12,.0f} requests/s  ({hit_rate.wall / raw.wall:.3f} x simpy raw; "
        f"CPU: {hit_rate.cpu:,.0f}/s, {hit_rate.cpu / raw.cpu:.3f} x)"
    )
    shares = summary["hit_ratio"]["tier_share"]
    print(
        f"staging:   {rate.wall:>12,.0f} requests/s  ({rate.wall / raw.wall:.3f} x simpy raw; "
        f"CPU: {rate.cpu:,.0f}/s, {rate.cpu / raw.cpu:.3f} x; {summary['requests']['total']:,} requests "
        f"in {summary['wall']['simulate_s']:.1f} s; L0 {shares['l0']:.2f} L1 {shares['l1']:.2f} L2 {shares['l2']:.2f})"
    )
    met = rate.wall >= TARGET_RATIO * raw.wall
    verdict = "meets" if met else "MISSES"
    print(
        f"target >= {TARGET_RATIO:.2f} x simpy raw for {args.agents} agents on staging-synthetic: {verdict} "
        f"(wall; CPU: {'meets' if rate.cpu >= TARGET_RATIO * raw.cpu else 'misses'})"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
