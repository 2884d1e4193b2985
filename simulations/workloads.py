"""The workloads: SimPy processes that drive the agents' ``MwManager`` objects through the real runtime API.

Each generator below is one documented behaviour of a fleet; a scenario composes them by its tables:

* :func:`agent` - one agent's requests: item reads (its current focus, else Zipf popularity with a drifting hot set,
  some absent ids), item writes
  through ``set_global_item_typed`` after the Mlt write, task status reads, reads of the herd's hot keys.
* :class:`Tasks` - the task lifecycle created -> queued -> running -> completed | failed | retry (-> queued), each
  status written to Mlt and then invalidated through the runtime.
* :func:`herd_at_expiry` - a crowd of agents reading a hot key at the instant its cached value expires.
* :func:`bursts`, :func:`drift`, :func:`churn` - load spikes, the moving working set, agents leaving and joining cold.
* :func:`prewarm`, :func:`heartbeat` - the checklist's Week 2 prewarming and every agent's ``memory_metrics``.
* :func:`double_prefix_writer` - a deliberate defect (buggy user code writing raw double-prefixed keys to L2).
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Callable
from typing import Any

from mw import keys as K
from mw.faults import injected
from mw.keys import global_typed_key
from mw.mlt import MltStore
from simulations.distributions import Zipf, item_sizes
from simulations.measure import KeyStats
from simulations.model import Agent, Model, Process
from simulations.scenario import VALUE_BYTES_CAP, DefectSpec, HerdSpec, ItemsSpec, TasksSpec
from simulations.truth import BUS_LAG_S

log = logging.getLogger("simulations")
app_log = logging.getLogger("app.writer")

HERD_KIND, HERD_SCOPE = "hot", "shared"


RANDOM_TEXT_BYTES = 2 * VALUE_BYTES_CAP
"""Length of the seeded text that ``random`` values are cut from (any item's slice fits in it)."""


class Catalog:
    """The items Mlt holds, their sizes, and the ids that Mlt does not have.

    Only the sizes are kept: a value is made when it is written (:meth:`value`), so 200,000 items of a lognormal
    size cost their sizes here, not a gigabyte of strings (Mlt and the tiers hold what they hold).
    """

    def __init__(self, spec: ItemsSpec, seed: int) -> None:
        self.spec = spec
        rng = random.Random(f"{seed}:catalog")
        self.ids = [f"i{i}" for i in range(spec.catalog)]
        self.sizes = item_sizes(spec, len(self.ids), rng)
        self.text = ""
        """``random`` content: seeded base64 text; a value is a slice of it, so zlib cannot shrink it to nothing."""
        if spec.value_content == "random":
            raw = random.Random(f"{seed}:content").randbytes(RANDOM_TEXT_BYTES * 3 // 4)
            self.text = base64.b64encode(raw).decode("ascii")
        self.keeps_values = spec.value_content == "repeated"
        """Whether the truth keeps each item's current value (a compare judges a fresh read). Not for ``random``
        content: its values are large and distinct, and the version parsed from the value judges them as well."""
        self.absent = [f"missing-{i}" for i in range(max(1, spec.absent_pool))]
        self.popularity = Zipf(spec.catalog, spec.zipf_alpha)
        self.absent_popularity = Zipf(len(self.absent), spec.zipf_alpha)
        self.index = {item_id: i for i, item_id in enumerate(self.ids)}
        self.keys = {item_id: global_typed_key(spec.kind, spec.scope, item_id) for item_id in self.ids + self.absent}
        self.written: set[str] = set()
        """Items written during the run."""

    def value(self, item_id: str, version: int) -> str:
        """An immutable value that names its version (``"3|xxx..."``), so the truth can judge any copy; ``random``
        content is the item's own slice of the seeded text (where it starts depends on the item and the version)."""
        i = self.index[item_id]
        size = self.sizes[i]
        if not self.text:
            return f"{version}|" + "x" * size
        start = ((i + 1) * 2_654_435_761 + version * 40_503) % (len(self.text) - size + 1)
        return f"{version}|" + self.text[start : start + size]

    def truth_value(self, value: str) -> str | None:
        """What the truth keeps of a value just written (see :attr:`keeps_values`)."""
        return value if self.keeps_values else None

    def seed_mlt(self, model: Model) -> None:
        self.seed_store(model.store)
        self.seed_truth(model)

    def seed_store(self, store: MltStore) -> None:
        kind, scope = self.spec.kind, self.spec.scope
        for item_id in self.ids:
            store.put_item(kind, scope, item_id, self.value(item_id, 1))

    def seed_truth(self, model: Model) -> None:
        """The catalog exists from now on (the absent ids never do); writes are judged by their writer's bound."""
        tolerate(model, "item", self.spec.invalidation_delay_s)
        now, created, value = model.env.now, model.truth.created, self.value
        if not self.keeps_values:
            for item_id in self.ids:
                created(item_id, 1, now, None)
            return
        for item_id in self.ids:
            created(item_id, 1, now, None, value(item_id, 1))


def tolerate(model: Model, what: str, delay_s: float) -> None:
    """The tolerance of a record class: a writer that tells the caches at once is held to the in-process bound (0),
    one whose invalidation arrives ``delay_s`` later (over the bus) to :data:`simulations.truth.BUS_LAG_S`."""
    lag = BUS_LAG_S if delay_s > 0 else 0.0
    model.truth.lag_s[what] = lag
    model.stale.tolerance_s[what] = lag


def agent(model: Model, me: Agent, catalog: Catalog, tasks: Tasks | None, herd: HerdSpec) -> Process:
    """One agent: exponential gaps at its total rate, each request drawn by the mix of the scenario's rates."""
    spec = catalog.spec
    env, rng = model.env, me.rng
    item_rate = spec.reads_per_agent_s
    task_rate = tasks.spec.reads_per_agent_s if tasks is not None else 0.0
    herd_rate = herd.reads_per_agent_s if herd.enabled else 0.0
    total = item_rate + task_rate + herd_rate
    if total <= 0:
        return
    kind, scope = spec.kind, spec.scope
    popularity, absent_popularity = catalog.popularity, catalog.absent_popularity
    ids, absent, keys = catalog.ids, catalog.absent, catalog.keys
    outcomes = model.outcomes
    lookup, resolve, served = model.lookup, model.resolve, model.item_served
    write_fraction, absent_fraction = spec.write_fraction, spec.absent_fraction
    zipf_writes = spec.write_popularity == "zipf"
    focus_fraction, focus_every = spec.focus_fraction, spec.focus_every_s
    focus: list[str] = []
    refocus_at = 0.0
    expovariate, uniform = rng.expovariate, rng.random
    timeout = env.timeout
    while me.alive:
        yield timeout(expovariate(total * model.rate_factor))
        if not me.alive:
            return
        u = uniform() * total
        if u < item_rate:
            if uniform() < write_fraction:
                pick = popularity.item(rng) if zipf_writes else rng.randrange(len(ids))
                write_item(model, me, catalog, ids[pick])
                continue
            outcomes.item_reads += 1
            u = uniform()
            if u < focus_fraction:
                if env.now >= refocus_at:
                    focus = [ids[popularity.item(rng)] for _ in range(spec.focus_size)]
                    refocus_at = env.now + focus_every
                item_id = focus[rng.randrange(len(focus))]
            elif u < focus_fraction + absent_fraction:
                item_id = absent[absent_popularity.item(rng)]
            else:
                item_id = ids[popularity.item(rng)]
            started = env.now
            plan = lookup(me, kind, scope, item_id, keys[item_id])
            state = plan.state
            if state == "hit":
                served(item_id, plan.value, started)
            elif state == "negative":
                served(item_id, None, started)
            else:
                value = yield from resolve(me, plan, model.mlt_item(kind, scope, item_id))
                served(item_id, value, started)
        elif u < item_rate + task_rate:
            assert tasks is not None
            yield from tasks.read(me)
        else:
            outcomes.herd_reads += 1
            yield from herd_read(model, me, f"h{rng.randrange(herd.keys)}", herd)


def write_item(model: Model, me: Agent, catalog: Catalog, item_id: str) -> None:
    """Mlt first, then the sanctioned global write: every other copy in the fleet is dropped, this one replaced.

    With ``items.invalidation_delay_s`` the caches hear of it that much later (a writer in another process);
    with ``defects.skip_invalidation`` never (a defect: the truth still holds the writer to its bound).
    """
    spec = catalog.spec
    version = max(1, model.truth.version(item_id)) + 1
    value = catalog.value(item_id, version)
    stored = model.store.put_item(spec.kind, spec.scope, item_id, value)
    if stored != version:
        raise RuntimeError(f"Mlt gave {item_id} version {stored}, the simulator expected {version}")
    now = model.env.now
    truth = model.truth
    truth.superseded(item_id, version, now, now + truth.lag_s["item"], catalog.truth_value(value))
    catalog.written.add(item_id)
    model.outcomes.writes += 1
    if model.scenario.defects.skip_invalidation:
        return
    if spec.invalidation_delay_s > 0:
        model.env.process(_write_through_later(model, me, spec, item_id, value))
    else:
        _write_through(model, me, spec, item_id, value)


def _write_through_later(model: Model, me: Agent, spec: ItemsSpec, item_id: str, value: str) -> Process:
    yield model.env.timeout(spec.invalidation_delay_s)
    _write_through(model, me if me.alive else None, spec, item_id, value)


def _write_through(model: Model, me: Agent | None, spec: ItemsSpec, item_id: str, value: str) -> None:
    manager = model.admin if me is None else me.manager
    manager.set_global_item_typed(spec.kind, spec.scope, item_id, value)
    if model.caching:
        key = global_typed_key(spec.kind, spec.scope, item_id)
        expire_at = manager.l0.expire_at(key)
        if expire_at is not None:
            model.loads.refreshed(key, expire_at - model.start_epoch)
        else:  # no tier kept the write (L2 down): the old copies are gone, the next read loads
            model.loads.invalidated(key)


def herd_read(model: Model, me: Agent, item_id: str, herd: HerdSpec) -> Process:
    """A read of a hot key, judged like an item read (a hot key is never written: any other answer is stale)."""
    started = model.env.now
    plan = model.lookup(me, HERD_KIND, HERD_SCOPE, item_id, global_typed_key(HERD_KIND, HERD_SCOPE, item_id))
    state = plan.state
    if state == "hit":
        value = plan.value
    elif state == "negative":
        value = None
    else:
        ttl = herd.ttl_s
        value = yield from model.resolve(me, plan, model.mlt_item(HERD_KIND, HERD_SCOPE, item_id), lambda _v: ttl)
    model.item_served(item_id, value, started, "herd")


def herd_value(i: int) -> str:
    return f"1|hot-{i}"


def seed_herd(model: Model, herd: HerdSpec) -> None:
    seed_herd_store(model.store, herd)
    seed_herd_truth(model, herd)


def seed_herd_store(store: MltStore, herd: HerdSpec) -> None:
    for i in range(herd.keys):
        store.put_item(HERD_KIND, HERD_SCOPE, f"h{i}", herd_value(i))


def seed_herd_truth(model: Model, herd: HerdSpec) -> None:
    now = model.env.now
    for i in range(herd.keys):
        model.truth.created(f"h{i}", 1, now, None, herd_value(i))


class HerdScheduler:
    """After each fill of a hot key, sends ``at_expiry`` agents to read it the moment it expires (one herd per key)."""

    def __init__(self, model: Model, herd: HerdSpec) -> None:
        self.model = model
        self.herd = herd
        self.rng = random.Random(f"{model.seed}:herd")
        self.pending: set[str] = set()

    def on_fill(self, _agent: Agent, key: str, valid_until: float) -> None:
        if key in self.pending or not self.model.agents:
            return
        self.pending.add(key)
        self.model.env.process(herd_at_expiry(self, key, valid_until))


def herd_at_expiry(scheduler: HerdScheduler, key: str, at: float) -> Process:
    """Wait for the expiry, then start every herd member's read within ``spread_ms`` of it."""
    model, herd, rng = scheduler.model, scheduler.herd, scheduler.rng
    yield model.env.timeout(max(0.0, at - model.env.now))
    scheduler.pending.discard(key)
    crowd = rng.sample(model.agents, min(herd.at_expiry, len(model.agents)))
    item_id = key.rsplit(":", 1)[1]
    for member in crowd:
        model.env.process(_late(model, member, rng.uniform(0, herd.spread_ms / 1000), item_id, herd))


def _late(model: Model, member: Agent, delay: float, item_id: str, herd: HerdSpec) -> Process:
    if delay > 0:
        yield model.env.timeout(delay)
    if member.alive:
        model.outcomes.herd_reads += 1
        yield from herd_read(model, member, item_id, herd)


class Tasks:
    """Task rows in Mlt moving through their lifecycle; every change is an Mlt write followed by an invalidation."""

    def __init__(self, model: Model, spec: TasksSpec) -> None:
        self.model = model
        self.spec = spec
        self.rng = random.Random(f"{model.seed}:tasks")
        self.live: list[str] = []
        self._slot: dict[str, int] = {}
        self.finished: list[str] = []
        self.rows: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, Agent] = {}
        self.created = 0
        self.transitions = 0
        tolerate(model, "task", spec.invalidation_delay_s)

    # --- writers --------------------------------------------------------------------------------------
    def creator(self) -> Process:
        """New tasks at ``create_per_agent_s`` per live agent (Poisson), each owned by a random agent that caches it."""
        env, spec, model = self.model.env, self.spec, self.model
        if spec.create_per_agent_s <= 0:
            return
        while True:
            rate = spec.create_per_agent_s * max(1, len(model.agents)) * model.rate_factor
            yield env.timeout(self.rng.expovariate(rate))
            if self.model.agents:
                env.process(self.lifecycle(self._create()))

    def _create(self) -> str:
        model = self.model
        task_id = f"t{self.created}"
        self.created += 1
        owner = self.rng.choice(model.agents)
        now = model.clock()
        row = {"id": task_id, "status": "created", "owner": owner.name, "attempt": 0, "created_at": now}
        row["updated_at"] = now
        stored = model.store.put_task(row)
        at = model.env.now
        model.truth.created(task_id, stored["version"], at, at + model.truth.lag_s["task"])
        self.rows[task_id] = stored
        self.owners[task_id] = owner
        ttl = owner.manager.cache_task_row(stored)
        if model.caching and ttl > 0:
            key = K.task_key(task_id)
            model.task_ttls.cached("created", ttl)
            model.loads.refreshed(key, model.env.now + ttl)
        self._slot[task_id] = len(self.live)
        self.live.append(task_id)
        return task_id

    def lifecycle(self, task_id: str) -> Process:
        env, spec = self.model.env, self.spec
        rng = random.Random(f"{self.model.seed}:{task_id}")
        attempt = 0
        yield env.timeout(rng.expovariate(1 / spec.dwell_created_s))
        while True:
            self._move(task_id, "queued", attempt=attempt)
            yield env.timeout(rng.expovariate(1 / spec.dwell_queued_s))
            lease_until = self.model.clock() + spec.lease_s
            self._move(task_id, "running", lease_expires_at=lease_until)
            yield env.timeout(rng.expovariate(1 / spec.dwell_running_s))
            u = rng.random()
            if u < spec.p_retry and attempt < spec.max_retries:
                self._move(task_id, "retry", run_after=self.model.clock() + spec.retry_backoff_s)
                yield env.timeout(spec.retry_backoff_s)
                attempt += 1
                continue
            self._move(task_id, "failed" if u < spec.p_retry + spec.p_failed else "completed")
            break
        self._retire(task_id)

    def _move(self, task_id: str, status: str, **fields: Any) -> None:
        """Mlt write, then ``invalidate_task`` (what ``MwManager.update_task_status`` does, with the sim's clock).

        With ``tasks.invalidation_delay_s`` the invalidation comes that much later (the task's worker in another
        process, heard over the bus); with ``defects.skip_invalidation`` never (a defect).
        """
        model = self.model
        row = dict(self.rows[task_id])
        row.pop("version", None)
        row.update(fields, status=status, updated_at=model.clock())
        stored = model.store.put_task(row)
        self.rows[task_id] = stored
        now = model.env.now
        truth = model.truth
        truth.superseded(task_id, stored["version"], now, now + truth.lag_s["task"])
        self.transitions += 1
        if model.scenario.defects.skip_invalidation:
            return
        owner = self.owners[task_id]
        if self.spec.invalidation_delay_s > 0:
            model.env.process(self._invalidate_later(task_id, owner))
        else:
            self._invalidate(task_id, owner)

    def _invalidate_later(self, task_id: str, owner: Agent) -> Process:
        yield self.model.env.timeout(self.spec.invalidation_delay_s)
        self._invalidate(task_id, owner)

    def _invalidate(self, task_id: str, owner: Agent) -> None:
        model = self.model
        if owner.alive:
            owner.manager.invalidate_task(task_id)
            owner.seen.task_evictions += 1
        else:
            model.admin.invalidate_task(task_id)
        if model.caching:
            model.loads.invalidated(K.task_key(task_id))

    def _retire(self, task_id: str) -> None:
        slot = self._slot.pop(task_id)
        last = self.live.pop()
        if last != task_id:
            self.live[slot] = last
            self._slot[last] = slot
        self.finished.append(task_id)
        if len(self.finished) > self.spec.recent_finished:
            gone = self.finished.pop(0)
            self.rows.pop(gone, None)
            self.owners.pop(gone, None)

    # --- readers --------------------------------------------------------------------------------------
    def read(self, me: Agent) -> Process:
        """A task status read through the split-phase read-through, judged for staleness and TTL."""
        model, rng = self.model, me.rng
        pool = self.live if self.live and (not self.finished or rng.random() < 0.8) else self.finished
        if not pool:
            return
        task_id = pool[rng.randrange(len(pool))]
        model.outcomes.task_reads += 1
        started = model.env.now
        plan = model.lookup_task(me, task_id, K.task_key(task_id))
        if plan.state == "hit":
            row = plan.value
        elif plan.state == "negative":
            row = None
        else:
            store = model.store
            row = yield from model.resolve(me, plan, lambda: store.get_task(task_id))
        model.task_served(me, plan.key, task_id, row, started)


def bursts(model: Model, every_s: float, length_s: float, factor: float) -> Process:
    """Every ``every_s`` the fleet's request rate is multiplied by ``factor`` for ``length_s``."""
    while True:
        yield model.env.timeout(every_s)
        model.rate_factor = factor
        yield model.env.timeout(length_s)
        model.rate_factor = 1.0


def drift(model: Model, catalog: Catalog) -> Process:
    """The working set moves: every ``drift_every_s`` the ranking shifts by ``drift_step`` items."""
    spec = catalog.spec
    while True:
        yield model.env.timeout(spec.drift_every_s)
        catalog.popularity.drift(spec.drift_step)


def churn(model: Model, every_s: float, fraction: float, start: Callable[[Agent], None]) -> Process:
    """Agents leave (their L0 goes with them) and as many new ones join with a cold L0."""
    rng = random.Random(f"{model.seed}:churn")
    while True:
        yield model.env.timeout(every_s)
        n = min(len(model.agents), max(1, round(fraction * len(model.agents))))
        for leaving in rng.sample(model.agents, n):
            model.remove_agent(leaving)
        for _ in range(n):
            start(model.add_agent())


def prewarm(model: Model, every_s: float, top_n: int, stats: KeyStats | None = None) -> Process:
    """Each agent calls ``prewarm(top_n)`` once per ``every_s``, round-robin over the fleet; with ``stats``, the
    Mlt loads each call makes are counted by key (at the fault seam, for the length of the call)."""
    turn = 0
    while True:
        yield model.env.timeout(every_s / max(1, len(model.agents)))
        if model.agents:
            turn %= len(model.agents)
            manager = model.agents[turn].manager
            if stats is None:
                manager.prewarm(top_n)
            else:
                with injected(stats):
                    manager.prewarm(top_n)
            turn += 1


def heartbeat(model: Model, me: Agent, every_s: float) -> Process:
    """The agent's heartbeat: ``memory_metrics()`` every ``every_s`` while it lives."""
    while True:
        yield model.env.timeout(every_s)
        if not me.alive:
            return
        model.heartbeats.beat(me.name, me.manager.memory_metrics(), me.seen, len(me.l0))


def double_prefix_writer(model: Model, every_s: float, kind: str, scope: str) -> Process:
    """Buggy user code: builds ``global:item:`` + an already global key and writes it straight to L2, and logs it."""
    l2 = model.admin.l2
    n = 0
    while True:
        yield model.env.timeout(every_s)
        raw = K.GLOBAL_PREFIX + global_typed_key(kind, scope, f"i{n % 10}")
        l2.client.set(l2.phys(raw), b"{}", px=int(every_s * 4000))
        app_log.info("Cached %s", raw)
        n += 1


def present_marked_absent(model: Model, defects: DefectSpec, catalog: Catalog) -> Process:
    """Buggy user code that takes a present item for deleted: drops it everywhere and marks it absent."""
    spec, rng = catalog.spec, random.Random(f"{model.seed}:mark-absent")
    admin = model.admin
    while True:
        yield model.env.timeout(defects.every_s)
        item_id = catalog.ids[catalog.popularity.item(rng)]
        admin.del_global_item_typed(spec.kind, spec.scope, item_id)
        admin.set_negative_cache(spec.kind, spec.scope, item_id)
        if model.caching:
            model.loads.invalidated(global_typed_key(spec.kind, spec.scope, item_id))
        log.info("Marked %s absent", item_id)


def start_all(
    model: Model,
    scenario: Any,
    catalog: Catalog,
    tasks: Tasks | None,
    *,
    prewarming: bool,
    key_stats: KeyStats | None = None,
) -> Callable[[Agent], None]:
    """Start the scenario's processes: its agents (and their heartbeats), task creation, drift, bursts, churn,
    prewarming and the fault injectors. Returns the function that starts one more agent (churn uses it).
    ``key_stats`` counts prewarming's Mlt loads by key."""
    env, run = model.env, scenario.run

    def start(member: Agent) -> None:
        env.process(agent(model, member, catalog, tasks, scenario.herd))
        if scenario.heartbeat.every_s > 0:
            env.process(heartbeat(model, member, scenario.heartbeat.every_s))

    for _ in range(run.agents):
        start(model.add_agent())
    if tasks is not None:
        env.process(tasks.creator())
    if scenario.items.drift_every_s > 0 and scenario.items.drift_step:
        env.process(drift(model, catalog))
    b = scenario.bursts
    if b.every_s > 0:
        env.process(bursts(model, b.every_s, b.length_s, b.factor))
    if scenario.churn.every_s > 0:
        env.process(churn(model, scenario.churn.every_s, scenario.churn.fraction, start))
    p = scenario.prewarm
    if prewarming and p.every_s > 0:
        env.process(prewarm(model, p.every_s, p.top_n, key_stats))
    if scenario.defects.double_prefix_writer:
        env.process(double_prefix_writer(model, scenario.defects.every_s, scenario.items.kind, scenario.items.scope))
    if scenario.defects.mark_present_absent:
        env.process(present_marked_absent(model, scenario.defects, catalog))
    return start
