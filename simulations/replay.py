"""``mw-sim replay``: a real trace, not the synthetic workload, drives the fleet, and is judged by the same verdict.

Two passes over the trace file, both streamed. :func:`index_trace` reads it once before any run: its span, every
object and its size (what Mlt is seeded with) and the single-cache comparison of the L0 policy and LRU
(:mod:`simulations.single_cache`). Then each run (cached, baseline) reads it again through :class:`TraceReplay`, a
:class:`simulations.runner.Workload`: every request is issued at its time (relative to the first request) by an agent
drawn from a stream seeded by the scenario's seed, through ``Model.lookup`` / ``Model.resolve`` like every synthetic
read, so it is counted, its loads judged, and its hit ratio is the fleet's observed one (the judged figure). Every
object is stored as version 1 of its size (``"1|xx..."``) and never written, so the stale-read oracle judges every
answer: anything but that value (a ``None`` included) is a stale read.

:func:`replay_scenario` turns a base scenario (``--scenario``, else the defaults) into the scenario of the replay: its
duration is the trace's span, its warm-up 10 % of it, the synthetic processes (tasks, herd, bursts, churn, prewarm,
faults) are off, so the running-task TTL check, which needs tasks, shows as not exercised. Runtime settings, Mlt
latency, fleet size and the other targets are the base's.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mw.keys import global_typed_key
from mw.readthrough import LoadPlan
from simulations import workloads as W
from simulations.model import NO_ANSWER, Agent, Model, Process
from simulations.scenario import Scenario
from simulations.single_cache import SingleCaches
from simulations.trace import Request, TraceError, read_trace

WARMUP_SHARE = 0.1
"""Share of the trace's span before hit ratios are measured (caches start cold)."""
UNSIZED_BYTES = 100
"""Value length of an object whose trace gives no size (a two-column CSV)."""
SAMPLES = (20, 200)
"""At least and at most this many samples of the time series over the span (each sample also scans L2)."""
HEARTBEATS_AT_LEAST = 4
"""A short trace shortens the heartbeat interval so that every agent still beats this many times."""


@dataclass
class TraceIndex:
    """What one pass over a trace learnt before the runs."""

    path: Path
    fmt: str
    requests: int = 0
    start: float = 0.0
    end: float = 0.0
    sized: bool = False
    sizes: dict[str, int] = field(default_factory=dict)
    """Every object, with its size at its first request (what Mlt holds)."""
    single_cache: dict[str, Any] = field(default_factory=dict)

    @property
    def span_s(self) -> float:
        return self.end - self.start

    def summary(self) -> dict[str, Any]:
        """The ``replay`` entry of ``result.json``."""
        return {
            "trace": str(self.path),
            "format": self.fmt,
            "requests": self.requests,
            "objects": len(self.sizes),
            "span_s": round(self.span_s, 6),
            "sized": self.sized,
            "bytes_of_objects": sum(self.sizes.values()) if self.sized else None,
            "single_cache": self.single_cache,
        }


def index_trace(path: Path, fmt: str, max_items: int, max_bytes: int | None) -> TraceIndex:
    """Read the trace once: its span, its objects and sizes, and the single-cache LRU vs L0-policy hit ratios."""
    index = TraceIndex(path, fmt)
    sizes = index.sizes
    caches: SingleCaches | None = None
    for request in read_trace(path, fmt):
        if caches is None:
            index.start = request.time
            index.sized = request.size is not None
            caches = SingleCaches(max_items, max_bytes, index.sized)
        key, size = request.key, request.size
        if key not in sizes:
            sizes[key] = UNSIZED_BYTES if size is None else size
        caches.access(key, sizes[key] if index.sized else None)  # the size Mlt holds, as the fleet sees it
        index.end = request.time
        index.requests += 1
    if caches is None:
        raise TraceError(path, "", "holds no request")
    index.single_cache = caches.summary()
    return index


def replay_scenario(base: Scenario, index: TraceIndex) -> Scenario:
    """The scenario of a replay: ``base``'s fleet, runtime and targets, the trace's time, no synthetic load."""
    duration = index.span_s + 1.0  # the last request is issued at the span; the run ends just after it
    low, high = SAMPLES
    sample_s = min(max(base.run.sample_s, duration / high), duration / low)
    heartbeat_s = min(base.heartbeat.every_s, duration / HEARTBEATS_AT_LEAST) if base.heartbeat.every_s > 0 else 0.0
    scenario = base.with_overrides(
        run={"duration_s": duration, "warmup_s": WARMUP_SHARE * duration, "sample_s": sample_s},
        tasks={"enabled": False},
        herd={"enabled": False},
        bursts={"every_s": 0.0},
        churn={"every_s": 0.0},
        prewarm={"every_s": 0.0, "compare": False},
        defects={"double_prefix_writer": False},
        heartbeat={"every_s": heartbeat_s},
    )
    description = (
        f"Replay of the {index.fmt} trace {index.path.name}: {index.requests} requests to {len(index.sizes)} objects "
        f"over {index.span_s:g} s, spread over the agents by the seed."
    )
    if base.source:
        description += f" Runtime, Mlt and targets from {base.source}."
    return dataclasses.replace(scenario, name=f"replay {index.path.name}", description=description)


class TraceReplay:
    """The workload of a replay: Mlt holds every object of the trace, and the trace's requests are the reads."""

    def __init__(self, index: TraceIndex, scenario: Scenario) -> None:
        self.index = index
        self.kind = scenario.items.kind
        self.scope = scenario.items.scope
        self.heartbeat_s = scenario.heartbeat.every_s

    def seed(self, model: Model) -> None:
        put, kind, scope, created = model.store.put_item, self.kind, self.scope, model.truth.created
        now = model.env.now
        for key, size in self.index.sizes.items():
            value = object_value(size)
            put(kind, scope, key, value)
            created(key, 1, now, None, value)

    def start(self, model: Model) -> None:
        for _ in range(model.scenario.run.agents):
            member = model.add_agent()
            if self.heartbeat_s > 0:
                model.env.process(W.heartbeat(model, member, self.heartbeat_s))
        model.env.process(self.issue(model, read_trace(self.index.path, self.index.fmt)))

    def issue(self, model: Model, requests: Iterator[Request]) -> Process:
        """Each request at its time, by a seeded choice of agent; a miss resolves in a process of its own."""
        env, agents, outcomes = model.env, model.agents, model.outcomes
        rng = random.Random(f"{model.seed}:replay")
        pick = rng.randrange
        lookup, served, kind, scope, start = model.lookup, model.item_served, self.kind, self.scope, self.index.start
        keys: dict[str, str] = {}
        for request in requests:
            wait = request.time - start - env.now
            if wait > 0:
                yield env.timeout(wait)
            me = agents[pick(len(agents))]
            outcomes.item_reads += 1
            item_id = request.key
            key = keys.get(item_id)
            if key is None:
                key = keys[item_id] = global_typed_key(kind, scope, item_id)
            plan = lookup(me, kind, scope, item_id, key)
            state = plan.state
            if state == "hit":
                served(item_id, plan.value, env.now)
            elif state == "negative":
                served(item_id, None, env.now)
            else:
                env.process(self.resolve(model, me, plan, request.key))

    def resolve(self, model: Model, me: Agent, plan: LoadPlan, key: str) -> Process:
        started = model.env.now
        value = yield from model.resolve(me, plan, model.mlt_item(self.kind, self.scope, key))
        if value is not NO_ANSWER:
            model.item_served(key, value, started)


def object_value(size: int) -> str:
    """What Mlt holds for an object of ``size`` bytes: version 1, so the oracle can judge every copy."""
    return "1|" + "x" * max(0, size - 2)
