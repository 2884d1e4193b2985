"""``mw-sim --engine ray``: a scenario's agents spread over Ray actors, in real time, on shared Redis and PostgreSQL.

:func:`run_on_ray` has the signature and the result shape of :func:`simulations.runner.run_once`, so the
report and the verdict are the SimPy engine's own. The differences are where the agents live:

* **Shards.** The agents are split over ``shards`` Ray actors (by default one per CPU of the cluster, spread
  over its nodes). Each shard runs the simulator's own model and workloads for its slice of agents on a
  ``simpy.rt.RealtimeEnvironment``; every shard starts its clock at the same wall instant, so simulated time
  agrees across processes (``speed`` simulated seconds per wall second). A shard that cannot keep up is
  reported (``engine.max_lag_s``), never hidden.
* **Tiers.** L2 and Mlt are the backend's Redis and PostgreSQL, shared by every shard; invalidations cross
  processes on the Redis bus (``pubsub`` is forced on). L1 is the Ray node's cache actor
  (:class:`mw.ray.RayNodeL1`): agents share an L1 per real Ray node, not per simulated node.
* **Writers.** Mlt is seeded once by the driver. Item writes (at the fleet's rate) come from shard 0 only, so two
  processes never race to write the same item version; every shard reads. Task lifecycles run in every shard
  (tasks are created per live agent; each shard's task ids are its own) and are read by that shard's agents.
* **Measures.** Outcomes, counters, series, heartbeats, TTL probes and L2 scans are merged; loads are replayed
  in time order into one tracker (the stampede check spans processes); every item read of every shard is judged
  against shard 0's writes. A read in another process may return the previous version for
  ``lag_bound_s`` wall seconds after a write (pub/sub is asynchronous; the measured lag is reported in
  ``engine.invalidation_lag_ms``); later ones are violations, as in the SimPy engine.

Ray and shared servers are required: the embedded backend's fakeredis lives in one process. ``address`` is
passed to ``ray.init`` (``"auto"``: the cluster this machine belongs to; ``None``: a local one).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mw import keys as K
from mw.telemetry import COUNTERS, hit_ratio
from simulations.backends import Backend
from simulations.fault_windows import WindowInjector
from simulations.measure import (
    MAX_EXAMPLES,
    DoublePrefix,
    Heartbeats,
    LoadTracker,
    Operations,
    Outcomes,
    StaleLog,
    TaskTTLs,
)
from simulations.scenario import Scenario, ScenarioError
from simulations.settings import for_run
from simulations.sim_bus import redis_bus_summary
from simulations.truth import Truth

log = logging.getLogger("simulations")

Progress = Callable[[str, float, float, float], None]

DEFAULT_SPEED = 30.0
"""Simulated seconds per wall second: an hour-long scenario takes two minutes a run (16 agents kept up on 2 cores)."""
LAG_BOUND_S = 0.25
"""Wall seconds another process may still serve the previous version after a write (invalidation in flight)."""
TASK_ID_STRIDE = 1_000_000_000
AGENT_STRIDE = 1_000_000


@dataclass
class ShardSpec:
    """What one shard runs: its slice of the fleet, the run's stores and the shared clock."""

    index: int
    agents: int
    total_agents: int
    scenario: Scenario
    label: str
    caching: bool
    prewarm: bool
    overrides: dict[str, Any]
    settings: dict[str, Any]
    start_epoch: float
    factor: float
    l1: str = "actor"
    log_dir: str | None = None
    environ: dict[str, str] = field(default_factory=dict)
    """The driver's ``MW_*`` variables: a shard on another host configures itself as the driver's report says."""

    @property
    def writer(self) -> bool:
        return self.index == 0


# --- inside a shard ---------------------------------------------------------------------------------------------
def _shard_scenario(spec: ShardSpec) -> Scenario:
    """The scenario as this shard runs it: its agents, one node (its Ray node), its share of writers."""
    s = spec.scenario
    share = spec.agents / spec.total_agents
    items: dict[str, Any] = {}
    if spec.writer:
        items["write_fraction"] = min(1.0, s.items.write_fraction / share) if share else 0.0
        if s.items.write_fraction / share > 1:
            log.warning(
                "shard 0 cannot carry the fleet's item writes (%.2f of its reads)", s.items.write_fraction / share
            )
    else:
        items["write_fraction"] = 0.0
    return s.with_overrides(
        run={"agents": spec.agents, "nodes": 1},
        items=items,
        defects={"double_prefix_writer": s.defects.double_prefix_writer and spec.writer},
    )


class SimShard:
    """A Ray actor running one slice of the fleet (``prepare``, then ``run`` at the shared start instant)."""

    def prepare(self, spec: ShardSpec) -> dict[str, Any]:
        import ray
        import simpy.rt

        from simulations import workloads as W
        from simulations.logwatch import LogWatch
        from simulations.model import Model
        from simulations.series import Sampler

        self.spec = spec
        scenario = _shard_scenario(spec)
        self.scenario = scenario
        rng_seed = f"{scenario.run.seed}:runtime:{spec.label}:{spec.index}"
        config = for_run(
            scenario.runtime,
            spec.settings,
            caching=spec.caching,
            rng_seed=rng_seed,
            pubsub=True,
            overrides=spec.overrides,
            environ=spec.environ,
        ).config
        self.env = env = simpy.rt.RealtimeEnvironment(factor=spec.factor, strict=False)

        class ShardModel(Model):
            """The simulator's model, recording what the driver merges: loads in time order, item reads and writes."""

            def __init__(self) -> None:
                super().__init__(env, scenario, config, start_epoch=spec.start_epoch)
                self._agent_seq = spec.index * AGENT_STRIDE  # agent names (and RNG streams) unique in the fleet
                self.l1_visible = spec.l1 != "actor"
                self.loads = _RecordingLoads(lambda: env.now)
                self.truth = _RecordingTruth(self.wall_now)
                self.item_prefix = K.global_typed_prefix(scenario.items.kind, scenario.items.scope)
                self.item_reads: list[tuple[str, int, float, float]] = []

            def wall_now(self) -> float:
                """Simulated time by the wall clock: item reads and writes of different shards compare on it even
                when a shard runs behind (its ``env.now`` would then date a write too early)."""
                return env.env_start + (time.monotonic() - env.real_start) / env.factor

            def _item_read(self, key: str, value: Any, started: float) -> None:
                if isinstance(value, str) and key.startswith(self.item_prefix) and "|" in value:
                    try:
                        version = int(value[: value.index("|")])
                    except ValueError:
                        return
                    self.item_reads.append((key[len(self.item_prefix) :], version, started, self.wall_now()))

            def lookup(self, agent: Any, kind: str, scope: str, item_id: str, key: str) -> Any:
                started = self.wall_now()
                plan = super().lookup(agent, kind, scope, item_id, key)
                if plan.state == "hit":
                    self._item_read(plan.key, plan.value, started)
                return plan

            def resolve(self, agent: Any, plan: Any, load: Any, ttl_for: Any = None) -> Any:
                started = self.wall_now()
                value = yield from super().resolve(agent, plan, load, ttl_for)
                self._item_read(plan.key, value, started)
                return value

        self.model = model = ShardModel()
        self.tier = None
        if spec.l1 == "actor" and spec.caching:
            from mw.ray import RayNodeL1

            self.tier = RayNodeL1.for_config(config, clock=model.clock)
            if not self.tier.wait_ready(60):
                log.warning("shard %d: node cache not ready; its agents read L2 meanwhile", spec.index)
            model.admin.node.l1 = self.tier  # the one simulated node of this shard is its Ray node
        self.node_id = ray.get_runtime_context().get_node_id()
        log_path = None if spec.log_dir is None else Path(spec.log_dir) / f"{spec.label}.shard{spec.index}.log"
        self.watch = LogWatch(model.double_prefix, log_path)

        run = scenario.run
        catalog = W.Catalog(scenario.items, run.seed)  # Mlt was seeded by the driver
        catalog.seed_truth(model)
        if scenario.herd.enabled:
            W.seed_herd_truth(model, scenario.herd)
            model.on_fill[W.HERD_KIND] = W.HerdScheduler(model, scenario.herd).on_fill
        self.tasks = tasks = W.Tasks(model, scenario.tasks) if scenario.tasks.enabled else None
        if tasks is not None:
            tasks.created = spec.index * TASK_ID_STRIDE  # task ids unique in the fleet
            tasks.rng = random.Random(f"{run.seed}:tasks:{spec.index}")  # shards must not create in lockstep
        self.sampler = sampler = Sampler(model, run.sample_s)

        W.start_all(model, scenario, catalog, tasks, prewarming=spec.prewarm and spec.caching)
        env.process(self._sample())
        env.process(sampler.mark_warm(min(run.warmup_s, run.duration_s)))
        self.lags: list[float] = []
        env.process(self._probe_lag(max(0.05, min(1.0, run.sample_s / 10))))
        return {"index": spec.index, "node_id": self.node_id, "agents": len(model.agents)}

    def _sample(self) -> Any:
        """The sampler's loop; only the writer shard scans L2 (one Redis, one scan per interval)."""
        sampler, model = self.sampler, self.model
        while True:
            yield self.env.timeout(sampler.sample_s)
            sampler.sample()
            if model.caching and self.spec.writer:
                sampler.scan_l2()

    def _probe_lag(self, every_s: float) -> Any:
        """How far behind the wall clock this shard's simulated time runs (wall seconds)."""
        env = self.env
        while True:
            yield env.timeout(every_s)
            self.lags.append((time.monotonic() - env.real_start) - (env.now - env.env_start) * env.factor)

    def progress(self) -> dict[str, Any] | None:
        """For the driver's progress bar, answered while ``run`` works (the actor has two threads)."""
        try:
            t = self.sampler.totals()
        except (AttributeError, RuntimeError):
            return None
        return {"now": self.env.now, "hits": t["l0_hits"] + t["l1_hits"] + t["l2_hits"], "misses": t["misses"]}

    def run(self, t0: float) -> dict[str, Any]:
        """Start at wall time ``t0`` (every shard does), run to the end, return what the driver merges."""
        model, sampler, env = self.model, self.sampler, self.env
        duration = self.scenario.run.duration_s
        time.sleep(max(0.0, t0 - time.time()))
        late = time.time() - t0
        try:
            with self.watch:
                env.sync()
                started = time.perf_counter()
                env.run(until=duration)
                if not sampler.rows or sampler.rows[-1]["t"] < duration:
                    sampler.sample()
                if model.caching and self.spec.writer:
                    sampler.scan_l2()
                simulate_s = time.perf_counter() - started
            model.waits.still_waiting = model.hung_reads()
            return self._result(late, simulate_s)
        finally:
            model.finish_leads()
            for agent in list(model.agents):
                agent.manager.close()
            if self.tier is not None:
                self.tier.flush(1.0)
            model.admin.close()
            model.cluster.close()

    def _result(self, late: float, simulate_s: float) -> dict[str, Any]:
        model, sampler = self.model, self.sampler
        agents = [
            {
                "name": a.name,
                "born": a.born,
                "died": a.died,
                "alive": a.alive,
                "telemetry": {name: getattr(a.manager.telemetry, name) for name in COUNTERS},
                "seen": a.seen.as_dict(),
                "hot": a.manager.get_hot_items(10),
            }
            for a in model.all_agents()
        ]
        lags = sorted(self.lags) or [0.0]
        bus = model.cluster.bus
        return {
            "index": self.spec.index,
            "node_id": self.node_id,
            "late_start_s": round(late, 4),
            "simulate_s": simulate_s,
            "lag_s": {"p50": lags[len(lags) // 2], "p99": lags[int(0.99 * (len(lags) - 1))], "max": lags[-1]},
            "bus_lag": None if bus is None else bus.lag.summary(),
            "bus_flushes": 0 if bus is None else bus.flushes,
            "bus_received": 0 if bus is None else bus.received,
            "node_tier": None if self.tier is None else self.tier.stats(),
            "agents": agents,
            "outcomes": model.outcomes.as_dict(),
            "operations": model.operations,
            "load_events": cast(_RecordingLoads, model.loads).events,
            "item_reads": model.item_reads,
            "item_writes": cast(_RecordingTruth, model.truth).writes,
            "stale": model.stale,
            "in_doubt": model.doubt_summary(),
            "task_ttls": model.task_ttls,
            "heartbeats": model.heartbeats,
            "double_prefix": model.double_prefix,
            "caller_errors": model.errors,
            "waits": model.waits,
            "rows": sampler.rows,
            "start": sampler.start,
            "warm": sampler.warm,
            "end": sampler.totals(),
            "l0_max_items": sampler.l0_max_items,
            "l0_max_bytes": sampler.l0_max_bytes,
            "tasks": None
            if self.tasks is None
            else {
                "created": self.tasks.created - self.tasks.doubted - self.spec.index * TASK_ID_STRIDE,
                "transitions": self.tasks.transitions,
            },
            "log_lines": self.watch.lines,
        }


class _RecordingLoads(LoadTracker):
    """A load tracker that also keeps its calls, so the driver can replay every shard's in one timeline."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self._now = now
        self.events: list[tuple[float, str, tuple[Any, ...]]] = []

    def _keep(self, t: float, op: str, args: tuple[Any, ...]) -> None:
        self.events.append((t, op, args))

    def started(self, key: str, now: float, node: str | None = None) -> bool:
        self._keep(now, "started", (key, now))
        return super().started(key, now, node)

    def finished(
        self,
        key: str,
        now: float,
        absent: bool,
        valid_until: float | None,
        node: str | None = None,
        leaseless: bool = False,
    ) -> None:
        self._keep(now, "finished", (key, now, absent, valid_until))
        super().finished(key, now, absent, valid_until, node, leaseless)

    def refreshed(self, key: str, valid_until: float) -> None:
        self._keep(self._now(), "refreshed", (key, valid_until))
        super().refreshed(key, valid_until)

    def invalidated(self, key: str) -> None:
        self._keep(self._now(), "invalidated", (key,))
        super().invalidated(key)


class _RecordingTruth(Truth):
    """A shard's truth that also remembers every new version and when (by ``wall_now``) it was written."""

    def __init__(self, wall_now: Callable[[], float]) -> None:
        super().__init__()
        self._wall_now = wall_now
        self.writes: list[tuple[str, int, float]] = []

    def superseded(
        self, record: str, new_version: int, at: float, deadline: float, value: object = None, **writer: Any
    ) -> None:
        self.writes.append((record, new_version, self._wall_now()))
        super().superseded(record, new_version, at, deadline, value, **writer)


# --- on the driver -----------------------------------------------------------------------------------------------
@dataclass
class _AgentRecord:
    name: str
    born: float
    died: float | None
    alive: bool
    manager: Any
    seen: Any


@dataclass
class _MergedModel:
    """What :func:`simulations.runner.summarise` reads of a model, merged over the shards."""

    config: Any
    outcomes: Outcomes
    loads: LoadTracker
    stale: StaleLog
    task_ttls: TaskTTLs
    heartbeats: Heartbeats
    double_prefix: DoublePrefix
    agents: list[_AgentRecord]
    retired: list[_AgentRecord] = field(default_factory=list)
    shards: list[dict[str, Any]] = field(default_factory=list)
    """The shards' results (their buses' figures)."""
    operations: Operations = field(default_factory=Operations)

    def all_agents(self) -> list[_AgentRecord]:
        return self.retired + self.agents

    def doubt_summary(self) -> dict[str, int]:
        """The shards' writes in doubt, summed."""
        total: Counter[str] = Counter()
        for r in self.shards:
            total.update(r["in_doubt"])
        return {k: total[k] for k in ("writes", "landed", "reads", "open")}

    def bus_summary(self) -> dict[str, Any]:
        """The shards' buses are Redis pub/sub."""
        lags = [r["bus_lag"] for r in self.shards if r["bus_lag"]]
        received = sum(r["bus_received"] for r in self.shards)
        return redis_bus_summary(self.config.pubsub, lags, received, sum(r["bus_flushes"] for r in self.shards))


@dataclass
class _MergedSampler:
    rows: list[dict[str, Any]]
    start: dict[str, int]
    warm: dict[str, int] | None
    end: dict[str, int]
    l0_max_items: int
    l0_max_bytes: int

    def totals(self) -> dict[str, int]:
        return dict(self.end)


def _sum_dicts(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for d in dicts:
        out.update(d)
    return dict(out)


def _merge_rows(per_shard: list[list[dict[str, Any]]], sample_s: float) -> list[dict[str, Any]]:
    """Series rows by sample time: counts summed, maxima kept, ratios recomputed from the sums."""
    by_t: dict[float, list[dict[str, Any]]] = {}
    for rows in per_shard:
        for r in rows:
            by_t.setdefault(r["t"], []).append(r)
    merged = []
    for t in sorted(by_t):
        rows = by_t[t]
        out: dict[str, Any] = {"t": t}
        for key in rows[0]:
            if key == "t":
                continue
            values = [r.get(key) for r in rows]
            if key.endswith("_max"):
                out[key] = max(v for v in values if v is not None)
            elif key.endswith("_mean"):
                n = sum(r.get("agents", 0) for r in rows)
                out[key] = round(sum((r.get(key) or 0) * r.get("agents", 0) for r in rows) / n, 3) if n else 0.0
            elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                out[key] = sum(values)
            else:
                out[key] = values[0]
        answered = sum(out.get(o, 0) for o in ("l0", "l1", "l2", "negative"))
        if "request_hit_ratio" in out:
            out["request_hit_ratio"] = round(answered / out["requests"], 6) if out.get("requests") else None
        if "mw_hit_ratio" in out:
            hm = out.get("mw_hits", 0) + out.get("mw_misses", 0)
            out["mw_hit_ratio"] = round(out.get("mw_hits", 0) / hm, 6) if hm else None
        if "mlt_qps" in out:
            out["mlt_qps"] = round(out.get("mlt_queries", 0) / sample_s, 4)
        merged.append(out)
    return merged


def _judge_items(results: list[dict[str, Any]], bound_sim_s: float) -> StaleLog:
    """Every item read of every shard against every write; tasks stay judged in the shard that runs them.

    A reader in the writer's process must see a write at once (its tiers are dropped before the write returns);
    a reader elsewhere gets ``bound_sim_s`` for the invalidation to arrive. Item reads are judged from the item's
    first write on (a shard records values only, not ``None``: the SimPy engine judges those too).
    """
    stale = StaleLog()
    local = ("task", "herd")  # a shard's own tasks, and hot keys that nobody writes: judged where they are read
    for r in results:
        s: StaleLog = r["stale"]
        for what in local:
            stale.checked[what] += s.checked.get(what, 0)
            stale.absent_answers[what] += s.absent_answers.get(what, 0)
            stale.within_bounds[what] += s.within_bounds.get(what, 0)
            stale.beyond_bounds[what] += s.beyond_bounds.get(what, 0)
            stale.tolerance_s[what] = s.tolerance_s.get(what, 0.0)
        stale.examples.extend(e for e in s.examples if e.get("what") in local)
    stale.examples = stale.examples[:MAX_EXAMPLES]
    stale.tolerance_s["item"] = bound_sim_s
    writes = sorted((at, record, version) for r in results for record, version, at in r["item_writes"])
    strict, relaxed = Truth(), Truth()
    first: dict[str, float] = {}
    for at, record, version in writes:
        first.setdefault(record, at)
        strict.superseded(record, version, at, at)
        relaxed.superseded(record, version, at, at + bound_sim_s)
    for r in results:
        truth = strict if r["index"] == 0 else relaxed
        for record, version, started, finished in r["item_reads"]:
            at = first.get(record)
            if at is None or finished < at:
                continue
            verdict = truth.judge(record, version, started)
            stale.record("item", verdict, record, version, truth.version(record), finished)
    return stale


def _merge(
    results: list[dict[str, Any]], config: Any, scenario: Scenario, bound_sim_s: float
) -> tuple[_MergedModel, _MergedSampler, Any]:
    outcomes = Outcomes()
    for name, value in _sum_dicts([r["outcomes"] for r in results]).items():
        setattr(outcomes, name, value)
    loads = LoadTracker()
    # One timeline: a stable sort by simulated time keeps each shard's own order for simultaneous events.
    events = sorted((e for r in results for e in r["load_events"]), key=lambda e: e[0])
    for _t, op, args in events:
        getattr(loads, op)(*args)
    task_ttls = TaskTTLs()
    heartbeats = Heartbeats(scenario.heartbeat.every_s)
    double_prefix = DoublePrefix()
    for r in results:
        tt: TaskTTLs = r["task_ttls"]
        for status, ttl in tt.applied_max.items():
            task_ttls.applied_max[status] = max(ttl, task_ttls.applied_max.get(status, -1.0))
        task_ttls.applied_count.update(tt.applied_count)
        for status, rem in tt.served_max_remaining.items():
            task_ttls.served_max_remaining[status] = max(rem, task_ttls.served_max_remaining.get(status, -1.0))
        for status, life in tt.l2_life_max_s.items():
            task_ttls.l2_life_max_s[status] = max(life, task_ttls.l2_life_max_s.get(status, -1.0))
        task_ttls.l2_no_expiry.update(tt.l2_no_expiry)
        hb: Heartbeats = r["heartbeats"]
        heartbeats.sent.update(hb.sent)
        heartbeats.invalid_count += hb.invalid_count
        heartbeats.invalid.extend(hb.invalid[: MAX_EXAMPLES - len(heartbeats.invalid)])
        heartbeats.untrue_count += hb.untrue_count
        heartbeats.untrue.extend(hb.untrue[: MAX_EXAMPLES - len(heartbeats.untrue)])
        heartbeats.last.update(hb.last)
        dp: DoublePrefix = r["double_prefix"]
        double_prefix.l2_keys |= dp.l2_keys
        double_prefix.log_lines += dp.log_lines
        double_prefix.scans += dp.scans
        double_prefix.log_examples.extend(dp.log_examples[: MAX_EXAMPLES - len(double_prefix.log_examples)])
    agents: list[_AgentRecord] = []
    retired: list[_AgentRecord] = []
    for r in results:
        for a in r["agents"]:
            hot = a["hot"]
            manager = SimpleNamespace(
                telemetry=SimpleNamespace(**a["telemetry"]),
                get_hot_items=lambda top_n=10, hot=hot: hot[:top_n],
            )
            record = _AgentRecord(a["name"], a["born"], a["died"], a["alive"], manager, SimpleNamespace(**a["seen"]))
            (agents if a["alive"] else retired).append(record)
    model = _MergedModel(
        config=config,
        outcomes=outcomes,
        loads=loads,
        stale=_judge_items(results, bound_sim_s),
        task_ttls=task_ttls,
        heartbeats=heartbeats,
        double_prefix=double_prefix,
        agents=agents,
        retired=retired,
        shards=results,
        operations=Operations.merged([r["operations"] for r in results]),
    )
    warms = [r["warm"] for r in results]
    sampler = _MergedSampler(
        rows=_merge_rows([r["rows"] for r in results], scenario.run.sample_s),
        start=_sum_dicts([r["start"] for r in results]),
        warm=None if any(w is None for w in warms) else _sum_dicts(warms),
        end=_sum_dicts([r["end"] for r in results]),
        l0_max_items=max(r["l0_max_items"] for r in results),
        l0_max_bytes=max(r["l0_max_bytes"] for r in results),
    )
    task_parts = [r["tasks"] for r in results if r["tasks"] is not None]
    tasks = (
        SimpleNamespace(  # each shard's count is net of its creations in doubt
            created=sum(t["created"] for t in task_parts),
            doubted=0,
            transitions=sum(t["transitions"] for t in task_parts),
        )
        if task_parts
        else None
    )
    return model, sampler, tasks


def _seed(scenario: Scenario, mlt_dsn: str) -> None:
    """Mlt as the SimPy engine seeds it (catalog, herd keys), once for every shard."""
    from mw.mlt import open_store
    from simulations import workloads as W

    store = open_store(mlt_dsn)
    try:
        W.Catalog(scenario.items, scenario.run.seed).seed_store(store)
        if scenario.herd.enabled:
            W.seed_herd_store(store, scenario.herd)
    finally:
        store.close()


def _ensure_ray(address: str | None, runtime_env: dict[str, Any] | None) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": "WARNING"}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(address=address, **kwargs)


def default_shards(agents: int) -> int:
    """One shard per CPU of the cluster (at least 1, at most one per agent)."""

    return max(1, min(agents, int(_cluster_cpus())))


def _cluster_cpus() -> float:
    """The cluster's CPUs (Ray's ``cluster_resources`` is untyped: typed here, once)."""
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get("CPU", 1))


def run_on_ray(
    scenario: Scenario,
    backend: Backend,
    options: Any,
    progress: Progress | None = None,
    *,
    address: str | None = None,
    shards: int | None = None,
    speed: float | None = None,
    l1: str = "actor",
    lag_bound_s: float = LAG_BOUND_S,
    runtime_env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run of ``scenario`` over Ray actors; the same summary as ``runner.run_once`` plus ``engine``.

    ``options`` is a :class:`simulations.runner.RunOptions`; its ``realtime`` (wall seconds per simulated second)
    wins over ``speed`` (simulated seconds per wall second, default :data:`DEFAULT_SPEED`).
    """
    if not scenario.mix.by_key_only:  # its shards record reads by key for the cross-shard item judgement only
        raise ScenarioError(
            f"{scenario.name}: [mix] batches, get_or_load and deletes run on the SimPy engine only "
            "(the Ray engine judges item reads by key across shards)"
        )
    import ray

    from simulations.runner import Outcome, summarise

    if backend.redis_url is None:
        raise ValueError(
            "the ray engine needs a Redis and an Mlt every shard reaches: --backend containers (local), or "
            "--backend redis --redis-url redis://HOST:PORT --mlt-dsn postgresql://... for a multi-node cluster"
        )
    if scenario.faults:
        kinds = ", ".join(sorted({w.kind for w in scenario.faults}))
        raise ScenarioError(
            f"{scenario.name}: [[faults]] ({kinds}) are applied in simulated time, on the SimPy engine only"
        )
    run = scenario.run
    factor = options.realtime or 1.0 / (speed or DEFAULT_SPEED)
    stores = backend.stores(options.label)
    if not stores.mlt_dsn or stores.mlt_dsn in ("sqlite://", "sqlite:///:memory:"):
        stores.cleanup()
        raise ValueError(
            "the ray engine needs a shared Mlt: pass --mlt-dsn postgresql://... (or use --backend containers)"
        )
    actors: list[Any] = []
    namespace = stores.settings()["namespace"]
    try:
        _ensure_ray(address, runtime_env)
        environ = {k: v for k, v in os.environ.items() if k.startswith("MW_")}
        config = for_run(
            scenario.runtime,
            stores.settings(),
            caching=options.caching,
            rng_seed=None,
            pubsub=True,
            overrides=options.overrides,
            environ=environ,
        ).config
        t_seed = time.perf_counter()
        _seed(scenario, stores.mlt_dsn)
        seed_s = time.perf_counter() - t_seed
        n = max(1, min(run.agents, shards or default_shards(run.agents)))
        sizes = [run.agents // n + (1 if i < run.agents % n else 0) for i in range(n)]
        cpus = _cluster_cpus()
        Shard = ray.remote(SimShard).options(
            max_concurrency=2, num_cpus=min(1.0, cpus / n), scheduling_strategy="SPREAD"
        )
        start_epoch = time.time()
        specs = [
            ShardSpec(
                index=i,
                agents=sizes[i],
                total_agents=run.agents,
                scenario=scenario,
                label=options.label,
                caching=options.caching,
                prewarm=options.prewarm,
                overrides=dict(options.overrides),
                settings=stores.settings(),
                start_epoch=start_epoch,
                factor=factor,
                l1=l1,
                log_dir=None if options.log_dir is None else str(options.log_dir),
                environ=environ,
            )
            for i in range(n)
        ]
        t_prepare = time.perf_counter()
        actors = [Shard.remote() for _ in specs]
        ready = ray.get([a.prepare.remote(s) for a, s in zip(actors, specs, strict=True)])
        prepare_s = time.perf_counter() - t_prepare
        t0 = time.time() + 0.5
        pending = [a.run.remote(t0) for a in actors]
        refs = list(pending)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            if progress is not None and pending:
                _report(progress, options.label, actors, run.duration_s)
        results = sorted(ray.get(refs), key=lambda r: r["index"])
        if progress is not None:
            _report(progress, options.label, [], run.duration_s, results)
        model, sampler, tasks = _merge(results, config, scenario, lag_bound_s / factor)
        simulate_s = max(r["simulate_s"] for r in results)
        wall = {"seed_s": round(seed_s, 3), "simulate_s": round(simulate_s, 3), "prepare_s": round(prepare_s, 3)}
        summary = summarise(model, scenario, options, Outcome(sampler, tasks, wall))  # type: ignore[arg-type]
        summary["log_lines"] = sum(r["log_lines"] for r in results)
        faults = WindowInjector((), time.monotonic).counts()  # faults run on the SimPy engine only: all zero
        summary["faults"] = {"windows": [], "kinds": [], **faults, "mlt_resumed": [], "crash_leases": []}
        summary["caller_errors"], summary["waits"] = _merged_callers(results)
        summary["engine"] = _engine(results, ready, address, factor, l1, lag_bound_s)
        return summary
    finally:
        for actor in actors:
            ray.kill(actor)
        if ray.is_initialized():
            from mw.ray import kill_node_caches

            kill_node_caches(namespace)
        stores.cleanup()


def _merged_callers(results: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every shard's caller errors and waits as one run's (each shard counted its own readers)."""
    errors, waits = results[0]["caller_errors"], results[0]["waits"]
    for r in results[1:]:
        errors.merge(r["caller_errors"])
        waits.merge(r["waits"])
    return errors.summary(), waits.summary()


def _report(progress: Progress, label: str, actors: list[Any], duration: float, results: Any = None) -> None:
    import ray

    if results is not None:
        hits = sum(r["end"]["l0_hits"] + r["end"]["l1_hits"] + r["end"]["l2_hits"] for r in results)
        misses = sum(r["end"]["misses"] for r in results)
        progress(label, duration, duration, hit_ratio(hits, misses))
        return
    try:
        states = [s for s in ray.get([a.progress.remote() for a in actors], timeout=2.0) if s is not None]
    except ray.exceptions.GetTimeoutError:
        return
    if states:
        now = min(s["now"] for s in states)
        progress(label, now, duration, hit_ratio(sum(s["hits"] for s in states), sum(s["misses"] for s in states)))


def _engine(
    results: list[dict[str, Any]],
    ready: list[dict[str, Any]],
    address: str | None,
    factor: float,
    l1: str,
    bound: float,
) -> dict[str, Any]:
    lags = [r["lag_s"] for r in results]
    bus = [r["bus_lag"] for r in results if r["bus_lag"] and r["bus_lag"]["count"]]
    max_lag = max(x["max"] for x in lags)
    tiers = [r["node_tier"] for r in results if r["node_tier"]]
    return {
        "name": "ray",
        "address": address or "local",
        "speed": round(1 / factor, 6),
        "shards": [
            {
                "index": r["index"],
                "agents": ready[r["index"]]["agents"],
                "node_id": r["node_id"],
                "writer": r["index"] == 0,
                "late_start_s": r["late_start_s"],
                "lag_s": {k: round(v, 4) for k, v in r["lag_s"].items()},
                "bus_flushes": r["bus_flushes"],
            }
            for r in results
        ],
        "ray_nodes": len({r["node_id"] for r in results}),
        "max_lag_s": round(max_lag, 4),
        "kept_up": max_lag <= bound,
        "stale_bound_s": bound,
        "invalidation_lag_ms": {
            "messages": sum(b["count"] for b in bus),
            "p50": round(max((b["p50_ms"] for b in bus), default=0.0), 3),
            "p99": round(max((b["p99_ms"] for b in bus), default=0.0), 3),
            "max": round(max((b["max_ms"] for b in bus), default=0.0), 3),
        },
        "l1": l1,
        "node_cache": _sum_dicts(tiers) if tiers else None,
    }
