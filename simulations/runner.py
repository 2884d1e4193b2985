"""One run of a scenario, and the invocation: the cached run, the caching-disabled baseline, the verdict.

A run seeds Mlt, starts the scenario's processes, advances SimPy to the end of the scenario and returns a JSON-ready
summary. Everything measured is a function of the seed on the embedded backend: the runtime's own random stream (TTL
jitter, XFetch) is seeded per run through ``MwConfig.rng_seed``, every workload stream draws from its own seeded
generator, and simulated time starts at a fixed epoch. Wall-clock figures are kept apart under ``wall``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import simpy
import simpy.rt

from mw.faults import injected
from mw.telemetry import hit_ratio
from simulations import telemetry_truth
from simulations import workloads as W
from simulations.backends import Backend
from simulations.fault_windows import WindowInjector, described, stretched
from simulations.logwatch import LogWatch
from simulations.measure import KeyStats
from simulations.model import START_EPOCH, Model
from simulations.real_faults import TOPOLOGY_KINDS, RealFaults, real, seam
from simulations.scenario import Scenario, ScenarioError
from simulations.series import Sampler
from simulations.settings import for_run, reported
from simulations.sim_bus import CHECK_EVERY_S, SimBus
from simulations.truth import BUS_LAG_S

Progress = Callable[[str, float, float, float], None]
"""``(run label, simulated now, duration, running hit ratio)``."""


class Workload(Protocol):
    """A run's load in place of the scenario's synthetic one (``mw-sim replay``): Mlt's rows, then the processes."""

    def seed(self, model: Model) -> None: ...

    def start(self, model: Model) -> None: ...


@dataclass
class RunOptions:
    label: str = "cached"
    caching: bool = True
    prewarm: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    """``MwConfig`` settings that replace the scenario's (how the tests break a configuration on purpose)."""
    realtime: float | None = None
    log_dir: Path | None = None
    workload: Workload | None = None
    """Seeds Mlt and starts the run's processes instead of the catalog and ``workloads.start_all``."""
    count_keys: bool = False
    """Count reads, hits and Mlt loads by key after the warm-up (the prewarm comparison's hot keys)."""
    hot_keys: list[str] | None = None
    """With ``count_keys``: the keys to report (the cached run's hot keys); ``None``: this run's most read."""


def run_once(
    scenario: Scenario, backend: Backend, options: RunOptions, progress: Progress | None = None
) -> dict[str, Any]:
    simulated_bus = not (options.realtime and backend.name != "embedded")  # else the real bus: Redis pub/sub
    if options.realtime:
        env: simpy.Environment = simpy.rt.RealtimeEnvironment(factor=options.realtime, strict=False)
        start_epoch = time.time()
    else:
        env = simpy.Environment()
        start_epoch = START_EPOCH
    real_faults = None
    topology = sorted({w.kind for w in scenario.faults if w.kind in TOPOLOGY_KINDS})
    if topology and simulated_bus:
        raise ScenarioError(
            f"{scenario.source or scenario.name}: [[faults]] {', '.join(topology)} change a real L2 topology: run "
            "with --realtime on --backend redis-sentinel or redis-cluster (simulated time has one embedded Redis)"
        )
    if not simulated_bus and real(scenario.faults):
        assert options.realtime is not None
        try:
            real_faults = RealFaults(env, scenario.faults, backend, options.realtime)
        except ScenarioError as exc:
            raise ScenarioError(f"{scenario.source or scenario.name}: {exc}") from None
    stores = backend.stores(options.label)
    rng_seed = f"{scenario.run.seed}:runtime:{options.label}"
    config = for_run(
        scenario.runtime, stores.settings(), caching=options.caching, rng_seed=rng_seed, overrides=options.overrides
    ).config
    if scenario.faults and config.tier_retry_s != 0:
        raise ScenarioError(
            f"{scenario.source or scenario.name}: [[faults]] need tier_retry_s = 0, the run has "
            f"{config.tier_retry_s:g} (MW_TIER_RETRY_S?): the retry window is wall time"
        )
    crashes = sum(w.crashes for w in scenario.faults if w.kind == "agent_crash")
    if crashes > scenario.run.agents:
        raise ScenarioError(
            f"{scenario.source or scenario.name}: [[faults]] agent_crash kills {crashes} agents, the fleet has "
            f"{scenario.run.agents}"
        )
    drops = [(w.at_s, w.end_s) for w in scenario.faults if w.kind == "pubsub_dropped"]
    outages = [(w.at_s, w.end_s) for w in scenario.faults if w.kind == "l2_down"]
    bus = None
    if simulated_bus:
        rng = random.Random(f"{scenario.run.seed}:bus")
        bus = SimBus(env, lambda: start_epoch + env.now, rng, drops=drops, outages=outages)
    model = Model(
        env,
        scenario,
        config,
        start_epoch=start_epoch,
        bus=bus,
        cross_node_lag_s=_real_bus_lag(options.realtime) if bus is None else bus.lag.max_s,
    )
    if bus is not None:
        bus.truth = model.truth
        env.process(bus.run())
        if scenario.run.nodes > 1:
            model.truth.outages = [(start, end + CHECK_EVERY_S + 1e-6) for start, end in outages]
    if real_faults is not None:  # the real windows act on the servers: the seam keeps only l2_slow (agent_crash)
        model.injector = WindowInjector(
            seam(scenario.faults),
            lambda: env.now,
            redis_timeout_s=config.redis_timeout_s,
            mlt_timeout_s=config.mlt_timeout_s,
        )
        model.charges = model.injector.charges
        if scenario.run.nodes > 1:
            model.truth.outages = real_faults.outages()
        real_faults.on_wiped = model.loads.wiped
        real_faults.on_extended = _HeldOpen(model, real_faults.slack_s)
        real_faults.errors = lambda: _tier_errors(model)
        real_faults.start()
    injector = model.injector
    log_path = None if options.log_dir is None else options.log_dir / f"{options.label}.log"
    try:
        faults = injected(injector) if scenario.faults else contextlib.nullcontext()
        with LogWatch(model.double_prefix, log_path) as watch, faults:
            outcome = _simulate(model, scenario, options, progress)
        summary = summarise(model, scenario, options, outcome)
        summary["faults"] = {
            "windows": described(scenario.faults),
            "kinds": [w.kind for w in scenario.faults],
            **injector.counts(),
            "mlt_resumed": model.resume,
            "crash_leases": sorted(model.crash_leases.values(), key=lambda r: (r["crashed_at"], r["key"])),
        }
        if real_faults is not None:
            summary["faults"]["real"] = real_faults.summary()
        model.waits.still_waiting = model.hung_reads()
        summary["caller_errors"] = model.errors.summary()
        summary["waits"] = model.waits.summary()
        summary["log_lines"] = watch.lines
        return summary
    finally:
        if real_faults is not None:
            real_faults.close()
        model.finish_leads()
        for agent in model.all_agents():  # crashed agents too: else their tiers stay in the process's metrics
            agent.manager.close()
        model.admin.close()
        model.close_clusters()
        stores.cleanup()


def _real_bus_lag(realtime: float | None) -> float:
    """The oracle's bound for a change heard over Redis pub/sub, in simulated seconds: :data:`BUS_LAG_S` is wall time
    (measured on real Redis), and with ``--realtime FACTOR`` a wall second is ``1 / FACTOR`` simulated ones."""
    return BUS_LAG_S / realtime if realtime else BUS_LAG_S


class _HeldOpen:
    """Stretches the checks' outage spans of one real window at a time: a failover whose promotion came late lasts
    until ``until`` (``inf`` while it is pending). Only that window's spans move, found by the span they have now
    (the declared end at first): a seam window starting at the same second (an ``l2_slow``) keeps its own."""

    def __init__(self, model: Model, slack_s: float) -> None:
        self.model = model
        self.slack_s = slack_s
        self._ends: dict[tuple[float, float], float] = {}

    def __call__(self, start: float, end: float, until: float) -> None:
        was = self._ends.get((start, end))
        self._ends[(start, end)] = until
        model = self.model
        model.loads.outages = stretched(model.loads.outages, (start, end if was is None else was), until)
        model.truth.outages = stretched(model.truth.outages, (start, end + self.slack_s if was is None else was), until)
        if until < math.inf:
            model.truth.end_open_outages(until)


def _tier_errors(model: Model) -> dict[str, int]:
    """The runtime's L2 and Mlt error counters, summed over every agent that ever lived."""
    agents = model.all_agents()
    return {name: sum(getattr(a.manager.telemetry, name) for a in agents) for name in ("l2_errors", "mlt_errors")}


@dataclass
class Outcome:
    sampler: Sampler
    tasks: W.Tasks | None
    wall: dict[str, float]
    key_stats: KeyStats | None = None


def _simulate(model: Model, scenario: Scenario, options: RunOptions, progress: Progress | None) -> Outcome:
    env, run = model.env, scenario.run
    started = time.perf_counter()
    catalog = W.Catalog(scenario.items, run.seed)
    if options.workload is None:
        catalog.seed_mlt(model)
    else:
        options.workload.seed(model)
    if scenario.herd.enabled:
        W.seed_herd(model, scenario.herd)
        model.on_fill[W.HERD_KIND] = W.HerdScheduler(model, scenario.herd).on_fill
    tasks = W.Tasks(model, scenario.tasks) if scenario.tasks.enabled else None
    seeded = time.perf_counter()
    sampler = Sampler(model, run.sample_s)
    stats = None
    if options.count_keys:
        warm = min(run.warmup_s, run.duration_s)
        stats = KeyStats(lambda: env.now, warm)
        # Model has no hook for this: every item read goes through Model.lookup, looked up when a reader starts.
        model.lookup = stats.wrap(model.lookup)  # type: ignore[method-assign]
        model.loads.count_per_key(warm)

    if options.workload is None:
        prewarming = options.prewarm and options.caching
        W.start_all(model, scenario, catalog, tasks, prewarming=prewarming, key_stats=stats)
    else:
        options.workload.start(model)

    def on_sample(_row: dict[str, Any]) -> None:
        if progress is not None:
            t = sampler.totals()
            hits = t["l0_hits"] + t["l1_hits"] + t["l2_hits"]
            progress(options.label, env.now, run.duration_s, hit_ratio(hits, t["misses"]))

    env.process(sampler.run(on_sample))
    env.process(sampler.mark_warm(min(run.warmup_s, run.duration_s)))
    if isinstance(env, simpy.rt.RealtimeEnvironment):
        env.sync()  # its wall clock started when it was made: seeding would otherwise be run off at full speed
    env.run(until=run.duration_s)
    if not sampler.rows or sampler.rows[-1]["t"] < run.duration_s:
        on_sample(sampler.sample())
    if model.caching:
        sampler.scan_l2()
    finished = time.perf_counter()
    wall = {"seed_s": round(seeded - started, 3), "simulate_s": round(finished - seeded, 3)}
    return Outcome(sampler, tasks, wall, stats)


def _measured(sampler: Sampler) -> dict[str, int]:
    end = sampler.totals()
    warm = sampler.warm or dict.fromkeys(end, 0)
    return {k: end[k] - warm.get(k, 0) for k in end}


def _hot_items(model: Model, top_n: int = 10) -> list[list[Any]]:
    merged: Counter[str] = Counter()
    for agent in model.agents:
        for name, count in agent.manager.get_hot_items(top_n):
            merged[name] += count
    return [[name, count] for name, count in merged.most_common(top_n)]


def summarise(model: Model, scenario: Scenario, options: RunOptions, outcome: Outcome) -> dict[str, Any]:
    """The run's summary (what ``result.json`` and the verdict read); the Ray engine calls it on its merged model."""
    sampler, tasks, wall = outcome.sampler, outcome.tasks, outcome.wall
    run = scenario.run
    totals = sampler.totals()
    measured = _measured(sampler)
    requests = sum(measured[o] for o in ("l0", "l1", "l2", "negative", "coalesced", "load"))
    hits = measured["l0_hits"] + measured["l1_hits"] + measured["l2_hits"]
    truth = telemetry_truth.compare(model.all_agents(), measured, measured)
    lifetimes = {a.name: (run.duration_s if a.died is None else a.died) - a.born for a in model.all_agents()}
    model.heartbeats.account(lifetimes)
    telemetry = [a.manager.telemetry for a in model.all_agents()]
    config = model.config
    all_requests = sum(totals[o] for o in ("l0", "l1", "l2", "negative", "coalesced", "load"))
    wall["requests_per_s"] = round(all_requests / wall["simulate_s"], 1) if wall["simulate_s"] else 0.0
    return {
        "label": options.label,
        "caching": options.caching,
        "prewarm": options.prewarm and scenario.prewarm.every_s > 0,
        "config": reported(config, scenario.runtime, caching=options.caching, overrides=options.overrides),
        "agents": {"started": len(lifetimes), "live_at_end": len(model.agents)},
        "requests": {"total": all_requests, "measured": requests, "outcomes": model.outcomes.as_dict()},
        "hit_ratio": {
            "observed": truth["hit_ratio"]["observed"],
            "mw_hit_ratio": round(hit_ratio(hits, measured["misses"]), 6),
            "request_hit_ratio": round((requests - measured["coalesced"] - measured["load"]) / requests, 6)
            if requests
            else 0.0,
            "tier_share": {t: round(measured[t] / requests, 6) if requests else 0.0 for t in ("l0", "l1", "l2")},
            "window": [min(run.warmup_s, run.duration_s), run.duration_s],
        },
        "mlt_queries": totals["mlt_queries"] - sampler.start["mlt_queries"],
        "loads": model.loads.summary(),
        "stale": {**model.stale.summary(), "in_doubt": model.doubt_summary()},
        "task_ttls": model.task_ttls.summary(),
        "l0": {
            "max_items": sampler.l0_max_items,
            "max_bytes": sampler.l0_max_bytes,
            "bound_items": scenario.targets.l0_max_items,
            "bound_bytes": scenario.targets.l0_max_bytes,
        },
        "telemetry_truth": truth,
        "heartbeats": model.heartbeats.summary(),
        "double_prefix": model.double_prefix.summary(),
        "negative_cache_hits": totals["negative_cache_hits"],
        "prewarmed": sum(t.prewarmed for t in telemetry),
        "lease_waits": sum(t.lease_waits for t in telemetry),
        "stale_sets_prevented": sum(t.stale_sets_prevented for t in telemetry),
        "tier_errors": totals["l2_errors"] + totals["mlt_errors"],
        "bus": model.bus_summary(),
        "hot_items": _hot_items(model),
        "tasks": {"created": tasks.created - tasks.doubted, "transitions": tasks.transitions}
        if tasks is not None
        else {},
        "operations": model.operations.summary(),
        "series": sampler.rows,
        "wall": wall,
        **_hot_keys(model, scenario, options, outcome.key_stats),
    }


def _hot_keys(model: Model, scenario: Scenario, options: RunOptions, stats: KeyStats | None) -> dict[str, Any]:
    """``{"hot_keys": ...}``: the reads, hit ratio and Mlt loads of the hot keys (the given ones, else this run's
    most read), when the run counted keys."""
    if stats is None:
        return {}
    keys = options.hot_keys if options.hot_keys is not None else stats.hottest(scenario.prewarm.hot_keys)
    return {"hot_keys": {"keys": list(keys), **stats.summary(keys, model.loads.per_key)}}


def run_scenario(
    scenario: Scenario,
    backend: Backend,
    *,
    overrides: dict[str, Any] | None = None,
    realtime: float | None = None,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    baseline: bool | None = None,
    run: Callable[..., dict[str, Any]] | None = None,
    workload: Workload | None = None,
) -> dict[str, Any]:
    """The cached run, the caching-disabled baseline, a run without prewarming if asked, and the verdict.

    ``run`` is the engine: :func:`run_once` (SimPy, the default) or ``simulations.ray_engine.run_on_ray``.
    ``workload`` replaces the scenario's synthetic load in every run (SimPy engine only).
    """
    if workload is not None and run is not None:
        raise ValueError("a workload runs on the SimPy engine only (run_once), not on a custom engine")
    engine = run_once if run is None else run
    from simulations.verdict import judge

    def options(label: str, **kw: Any) -> RunOptions:
        return RunOptions(
            label, overrides=dict(overrides or {}), realtime=realtime, log_dir=log_dir, workload=workload, **kw
        )

    compare = scenario.prewarm.compare and scenario.prewarm.every_s > 0
    runs = {"cached": engine(scenario, backend, options("cached", count_keys=compare), progress)}
    if scenario.run.baseline if baseline is None else baseline:
        runs["baseline"] = engine(scenario, backend, options("baseline", caching=False), progress)
    if compare:
        hot = runs["cached"].get("hot_keys", {}).get("keys")
        without = options("no_prewarm", prewarm=False, count_keys=True, hot_keys=hot)
        runs["no_prewarm"] = engine(scenario, backend, without, progress)
    cached = runs["cached"]
    effect = prewarm_effect(cached, runs["no_prewarm"]) if "no_prewarm" in runs else None
    verdict = judge(cached, scenario.targets, tasks=scenario.tasks.enabled, prewarm=effect)
    mlt: dict[str, Any] = {"queries_cached": cached["mlt_queries"]}
    if "baseline" in runs:
        base = runs["baseline"]["mlt_queries"]
        mlt.update(queries_baseline=base, reduction=round(1 - cached["mlt_queries"] / base, 6) if base else 0.0)
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "source": scenario.source,
        "params": {
            "agents": scenario.run.agents,
            "nodes": scenario.run.nodes,
            "duration_s": scenario.run.duration_s,
            "warmup_s": scenario.run.warmup_s,
            "seed": scenario.run.seed,
            "overrides": dict(overrides or {}),
            "realtime": realtime,
        },
        "backend": backend.description,
        "deterministic": backend.deterministic and not realtime and engine is run_once,
        "engine": "simpy" if engine is run_once else getattr(getattr(engine, "func", engine), "__name__", "custom"),
        "verdict": verdict.as_dict(),
        "faults": described(scenario.faults),
        "mlt": mlt,
        "runs": runs,
    }
    if effect is not None:
        result["prewarm_effect"] = effect
    if scenario.informational:
        result["informational"] = True
    return result


HOT_FIGURES = ("reads", "hit_ratio", "read_loads", "prewarm_loads", "mlt_loads")


def prewarm_effect(cached: dict[str, Any], no_prewarm: dict[str, Any]) -> dict[str, Any]:
    """Prewarming's effect: the fleet's hit ratio with and without it, and, when both runs counted keys, what it did
    for the hot keys (the cached run's most read): their hit ratio and their Mlt loads on the read path (a reader
    waited for Mlt) and by prewarming, with and without."""
    with_, without = cached["hit_ratio"]["mw_hit_ratio"], no_prewarm["hit_ratio"]["mw_hit_ratio"]
    effect: dict[str, Any] = {"with": with_, "without": without, "delta": round(with_ - without, 6)}
    hot_with, hot_without = cached.get("hot_keys"), no_prewarm.get("hot_keys")
    if hot_with is None or hot_without is None:
        return effect
    effect["hot_keys"] = {
        "n": len(hot_with["keys"]),
        "keys": hot_with["keys"],
        "defined_by": "the cached run's most read keys after the warm-up, by the simulator's count",
    }
    effect["hot"] = {
        "with": {k: hot_with[k] for k in HOT_FIGURES},
        "without": {k: hot_without[k] for k in HOT_FIGURES},
    }
    effect["hot_hit_ratio_delta"] = round(hot_with["hit_ratio"] - hot_without["hit_ratio"], 6)
    for figure in ("read_loads", "mlt_loads"):
        before = hot_without[figure]
        effect[f"hot_{figure}_fewer"] = round(1 - hot_with[figure] / before, 6) if before else None
    return effect
