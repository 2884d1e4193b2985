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

    python benchmarks/sim_throughput.py [--duration 3600] [--agents 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    import simulations  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simpy

from simulations.backends import Backend
from simulations.runner import RunOptions, run_once
from simulations.scenario import load_scenario

TARGET_RATIO = 0.10


def simpy_raw_rate(processes: int = 1000, timeouts: int = 300) -> float:
    env = simpy.Environment()

    def proc(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        for _ in range(timeouts):
            yield env.timeout(1)

    for _ in range(processes):
        env.process(proc(env))
    started = time.perf_counter()
    env.run()
    return processes * timeouts / (time.perf_counter() - started)


def scenario_rate(name: str, agents: int, duration: float, **sections: dict[str, object]) -> tuple[float, dict]:
    scenario = load_scenario("staging-synthetic").with_overrides(
        run={"agents": agents, "duration_s": duration, "warmup_s": min(300.0, duration / 4)}, **sections
    )
    summary = run_once(scenario, Backend("embedded"), RunOptions(label=name))
    return summary["wall"]["requests_per_s"], summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3600.0, help="simulated seconds of staging-synthetic")
    args = parser.parse_args()

    raw = simpy_raw_rate()
    print(f"simpy raw: {raw:>12,.0f} events/s (1,000 processes x timeouts)")
    hit_rate, _ = scenario_rate(
        "hit-path",
        args.agents,
        args.duration,
        items={"catalog": 50, "write_fraction": 0.0, "absent_fraction": 0.0, "drift_every_s": 0.0},
        tasks={"enabled": False},
        churn={"every_s": 0.0},
        bursts={"every_s": 0.0},
    )
    print(f"hit path:  {hit_rate:>12,.0f} requests/s  ({hit_rate / raw:.2f} x simpy raw)")
    rate, summary = scenario_rate("staging-synthetic", args.agents, args.duration)
    shares = summary["hit_ratio"]["tier_share"]
    print(
        f"staging:   {rate:>12,.0f} requests/s  ({rate / raw:.2f} x simpy raw; "
        f"{summary['requests']['total']:,} requests "
        f"in {summary['wall']['simulate_s']:.1f} s; L0 {shares['l0']:.2f} L1 {shares['l1']:.2f} L2 {shares['l2']:.2f})"
    )
    verdict = "meets" if rate >= TARGET_RATIO * raw else "MISSES"
    print(f"target >= {TARGET_RATIO:.2f} x simpy raw for {args.agents} agents on staging-synthetic: {verdict}")
    return 0 if rate >= TARGET_RATIO * raw else 1


if __name__ == "__main__":
    raise SystemExit(main())
