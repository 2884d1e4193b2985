"""The workloads: SimPy processes that drive the agents' ``MwManager`` objects through the real runtime API.

Each generator below is one documented behaviour of a fleet; a scenario composes them by its tables:

* :func:`agent` - one agent's requests: item reads (its current focus, else Zipf popularity with a drifting hot set,
  some absent ids), item writes
  through ``set_global_item_typed`` after the Mlt write, task status reads, reads of the herd's hot keys; as
  ``[mix]`` weighs them, batches (``get_many_typed``), reads with a caller TTL (``get_or_load``) and deletes.
* :class:`Tasks` - the task lifecycle created -> queued -> running -> completed | failed | retry (-> queued), each
  status written to Mlt and then invalidated through the runtime.
* :func:`herd_at_expiry` - a crowd of agents reading a hot key at the instant its cached value expires.
* :func:`bursts`, :func:`drift`, :func:`churn` - load spikes, the moving working set, agents leaving and joining cold.
* :func:`prewarm`, :func:`heartbeat` - the checklist's Week 2 prewarming and every agent's ``memory_metrics``.
* :func:`double_prefix_writer` - a deliberate defect (buggy user code writing raw double-prefixed keys to L2).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from mw import keys as K
from mw.errors import MltUnavailable
from mw.faults import injected
from mw.keys import global_typed_key
from mw.mlt import MltStore
from simulations.distributions import Zipf, item_sizes
from simulations.measure import KeyStats
from simulations.model import CALLER_ERRORS, NO_ANSWER, Agent, Model, Process
from simulations.scenario import VALUE_BYTES_CAP, DefectSpec, FaultWindow, HerdSpec, ItemsSpec, TasksSpec
from simulations.truth import BEYOND, BUS_LAG_S

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
    one whose invalidation arrives ``delay_s`` later (over the bus) to :data:`simulations.truth.BUS_LAG_S`; with more
    than one node, a writer on another node to the bus's bound (``Model.cross_node_lag_s``)."""
    local = BUS_LAG_S if delay_s > 0 else 0.0
    lag = max(local, model.cross_node_lag_s)
    model.truth.lag_s[what] = lag
    model.truth.local_lag_s[what] = local
    model.stale.tolerance_s[what] = lag
    model.stale.tolerance_same_node_s[what] = local


def agent(model: Model, me: Agent, catalog: Catalog, tasks: Tasks | None, herd: HerdSpec) -> Process:
    """One agent: exponential gaps at its total rate, each request drawn by the mix of the scenario's rates.

    An item request that is not a write is a read by key unless ``[mix]`` weighs other operations too: then one
    more draw picks a batch, a read with the caller's TTL or a delete (a run without ``[mix]`` draws as before).
    """
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
    outcomes, counts, stale_beyond = model.outcomes, model.operations.counts, model.operations.stale_beyond
    lookup, resolve, served = model.lookup, model.resolve, model.item_served
    write_fraction, absent_fraction = spec.write_fraction, spec.absent_fraction
    zipf_writes = spec.write_popularity == "zipf"
    focus_fraction, focus_every = spec.focus_fraction, spec.focus_every_s
    mix = model.scenario.mix
    weights = None if mix.by_key_only else mix.weights()
    focus: list[str] = []
    refocus_at = 0.0
    expovariate, uniform = rng.expovariate, rng.random
    timeout = env.timeout

    def pick_read() -> str:
        nonlocal focus, refocus_at
        u = uniform()
        if u < focus_fraction:
            if env.now >= refocus_at:
                focus = [ids[popularity.item(rng)] for _ in range(spec.focus_size)]
                refocus_at = env.now + focus_every
            return focus[rng.randrange(len(focus))]
        if u < focus_fraction + absent_fraction:
            return absent[absent_popularity.item(rng)]
        return ids[popularity.item(rng)]

    def pick_write() -> str:
        return ids[popularity.item(rng) if zipf_writes else rng.randrange(len(ids))]

    while me.alive:
        gap = expovariate(total * model.rate_factor)
        if me.owed:  # what its last calls cost (slow L2, an Mlt deadline): it was busy that long
            gap += me.owed
            me.owed = 0.0
        yield timeout(gap)
        if not me.alive:
            return
        u = uniform() * total
        if u < item_rate:
            if uniform() < write_fraction:
                write_item(model, me, catalog, pick_write())
                continue
            op = "get_item_typed"
            if weights is not None:
                w = uniform()
                op = next(name for name, upto in weights if w < upto)
            if op == "get_item_typed":
                outcomes.item_reads += 1
                counts[op] += 1
                item_id = pick_read()
                started = env.now
                plan = lookup(me, kind, scope, item_id, keys[item_id])
                state = plan.state
                if state == "hit":
                    verdict = served(item_id, plan.value, started)
                elif state == "negative":
                    verdict = served(item_id, None, started)
                else:
                    value = yield from resolve(me, plan, model.mlt_item(kind, scope, item_id))
                    if value is NO_ANSWER:  # the runtime raised (judged by the caller-error checks)
                        continue
                    verdict = served(item_id, value, started)
                if verdict == BEYOND:
                    stale_beyond[op] += 1
            elif op == "get_many_typed":
                yield from batch_read(model, me, catalog, [pick_read() for _ in range(mix.batch_size)])
            elif op == "get_or_load":
                outcomes.item_reads += 1
                counts[op] += 1
                yield from get_or_load(model, me, kind, scope, pick_read(), mix.get_or_load_ttl_s)
            else:
                delete_item(model, me, catalog, pick_write(), op)
        elif u < item_rate + task_rate:
            assert tasks is not None
            yield from tasks.read(me)
        else:
            outcomes.herd_reads += 1
            counts["herd_read"] += 1
            yield from herd_read(model, me, f"h{rng.randrange(herd.keys)}", herd)


def read_by_key(model: Model, me: Agent, kind: str, scope: str, item_id: str, op: str) -> Process:
    """A read by key through the split-phase read-through (``begin_load``), judged by the oracle."""
    started = model.env.now
    value = yield from model.read(me, kind, scope, item_id, global_typed_key(kind, scope, item_id))
    if value is NO_ANSWER:
        return
    if model.item_served(item_id, value, started, reader=me.node) == BEYOND:
        model.operations.stale_beyond[op] += 1


def get_or_load(model: Model, me: Agent, kind: str, scope: str, item_id: str, ttl_s: float) -> Process:
    """``get_or_load(..., ttl_s=)`` in steps (``begin_get_or_load``): what it loads is filled with the caller's
    TTL, and an L0 hit XFetch wants refreshed is loaded again before it expires. Judged by the oracle."""
    started = model.env.now
    plan, early = model.lookup_or_load(me, kind, scope, item_id, global_typed_key(kind, scope, item_id), ttl_s)
    state = plan.state
    load = model.mlt_item(kind, scope, item_id)
    if state == "hit":
        value = plan.value
    elif state == "negative":
        value = None
    elif early:
        value = yield from model.refresh(me, plan, load)
    else:
        value = yield from model.resolve(me, plan, load)
    if value is NO_ANSWER:
        return
    if model.item_served(item_id, value, started, reader=me.node) == BEYOND:
        model.operations.stale_beyond["get_or_load"] += 1


def batch_read(model: Model, me: Agent, catalog: Catalog, drawn: list[str]) -> Process:
    """One ``get_many_typed`` of the distinct ids drawn; every value it returns is judged, and every id it left out
    (no tier held it: a miss) is then read by key, all of them at once (SimPy processes the batch waits for)."""
    spec, ops = catalog.spec, model.operations
    item_ids = list(dict.fromkeys(drawn))
    ops.counts["get_many_typed"] += 1
    ops.batch_keys += len(item_ids)
    started = model.env.now
    found = model.lookup_many(me, spec.kind, spec.scope, item_ids, [catalog.keys[i] for i in item_ids])
    if found is None:  # the call raised (counted in the model's errors): no answer to judge
        return
    ops.batch_values += len(found)
    for item_id, value in found.items():
        if model.item_served(item_id, value, started, reader=me.node) == BEYOND:
            ops.stale_beyond["get_many_typed"] += 1
    left = [i for i in item_ids if i not in found]
    if not left:
        return
    ops.batch_followups += len(left)
    process = model.env.process
    reads = [process(read_by_key(model, me, spec.kind, spec.scope, i, "get_many_typed")) for i in left]
    yield model.env.all_of(reads)


def write_item(model: Model, me: Agent, catalog: Catalog, item_id: str) -> None:
    """Mlt first, then the sanctioned global write: every other copy in the fleet is dropped, this one replaced.

    With ``items.invalidation_delay_s`` the caches hear of it that much later (a writer in another process);
    with ``defects.skip_invalidation`` never (a defect: the truth still holds the writer to its bound).
    """
    spec, truth = catalog.spec, model.truth
    version = truth.next_version(item_id)
    value = catalog.value(item_id, version)
    if model.charges:
        model.injector.take()
    try:
        stored = model.store.put_item(spec.kind, spec.scope, item_id, value)
    except CALLER_ERRORS as exc:  # Mlt did not answer (mlt_down): nothing changed, unless the write is in doubt
        write_failed(model, me, exc)
        if in_doubt(exc):
            truth.doubted(item_id, version)
            _drop_copies(model, me, spec, item_id)
        return
    now = model.env.now
    expected = max(1, truth.version(item_id)) + 1 - truth.mlt_base.get(item_id, 0)  # re-created: from 1 again
    if stored == 1 < expected and truth.delete_ran(item_id, now, now, recreated=True):
        expected = 1  # a doubted delete had run: Mlt numbered the record from 1 again
    settled = truth.landed(item_id, stored, expected)
    truth.mlt_base[item_id] = version - stored
    truth.superseded(
        item_id,
        version,
        now,
        now + truth.lag_s["item"],
        catalog.truth_value(value),
        writer=me.node,
        local_deadline=now + truth.local_lag_s["item"],
    )
    if settled:
        truth.settle(item_id, settled)
    catalog.written.add(item_id)
    model.outcomes.writes += 1
    if model.scenario.defects.skip_invalidation:
        return
    if spec.invalidation_delay_s > 0:
        model.env.process(_write_through_later(model, me, spec, item_id, value))
    else:
        _write_through(model, me, spec, item_id, value)
        if model.charges:
            me.owed += model.injector.take()


def in_doubt(exc: Exception) -> bool:
    """Whether a failed write may still land (its statement reached Mlt: a stopped server runs it on resuming)."""
    return isinstance(exc, MltUnavailable) and exc.in_doubt


def _drop_copies(model: Model, me: Agent | None, spec: ItemsSpec, item_id: str) -> None:
    """A writer whose write is in doubt drops every cached copy, as ``update_task_status`` does for a task row: the
    next read asks Mlt, whichever way the write went."""
    manager = model.admin if me is None or not me.alive else me.manager
    model.operations.counts["del_global_item_typed"] += 1
    with contextlib.suppress(*CALLER_ERRORS):  # L2 down as well: the copies left expire by their TTL
        manager.del_global_item_typed(spec.kind, spec.scope, item_id)
    if model.charges and me is not None:
        me.owed += model.injector.take()
    if model.caching:
        model.loads.invalidated(global_typed_key(spec.kind, spec.scope, item_id))


def write_failed(model: Model, me: Agent | None, exc: Exception) -> None:
    """A write Mlt refused: counted as the writer's error (it waited the store's deadline)."""
    if model.charges:
        cost = model.injector.take()
        if me is not None:
            me.owed += cost
    now = model.env.now
    model.errors.record("write", now, now, exc)


def _write_through_later(model: Model, me: Agent, spec: ItemsSpec, item_id: str, value: str) -> Process:
    yield model.env.timeout(spec.invalidation_delay_s)
    _write_through(model, me if me.alive else None, spec, item_id, value)


def _write_through(model: Model, me: Agent | None, spec: ItemsSpec, item_id: str, value: str) -> None:
    manager = model.admin if me is None else me.manager
    model.operations.counts["set_global_item_typed"] += 1
    manager.set_global_item_typed(spec.kind, spec.scope, item_id, value)
    if model.caching:
        key = global_typed_key(spec.kind, spec.scope, item_id)
        expire_at = manager.l0.expire_at(key)
        if expire_at is not None:
            model.loads.refreshed(key, expire_at - model.start_epoch)
        else:  # no tier kept the write (L2 down): the old copies are gone, the next read loads
            model.loads.invalidated(key)


def delete_item(model: Model, me: Agent, catalog: Catalog, item_id: str, op: str) -> None:
    """Mlt's ``delete_item`` first, then the cache delete ``op`` (``del_global_item_typed`` or ``del_global_key``):
    every copy in the fleet is dropped and the truth knows the record is gone, so later reads must say ``None``.

    Timed like a write: ``items.invalidation_delay_s`` later (a deleter in another process), or with
    ``defects.skip_invalidation`` never (a defect: the old value is still judged against the delete).
    """
    spec = catalog.spec
    if model.charges:
        model.injector.take()
    try:
        existed = model.store.delete_item(spec.kind, spec.scope, item_id)
    except CALLER_ERRORS as exc:  # Mlt did not answer (mlt_down): nothing deleted, unless the delete is in doubt
        write_failed(model, me, exc)
        if in_doubt(exc):
            model.truth.doubted(item_id, delete=True)
            _drop_copies(model, me, spec, item_id)
        return
    now, truth = model.env.now, model.truth
    deadline = now + truth.lag_s["item"]
    ran = not existed and truth.delete_ran(item_id, now, deadline, recreated=False)  # a doubted one had: recorded
    if not ran and truth.deleted(item_id, now, deadline) != existed and item_id not in truth.doubts:
        raise RuntimeError(f"Mlt {'had' if existed else 'did not have'} {item_id}, the simulator thought otherwise")
    if model.scenario.defects.skip_invalidation:
        return
    if spec.invalidation_delay_s > 0:
        model.env.process(_delete_through_later(model, me, spec, item_id, op))
    else:
        _delete_through(model, me, spec, item_id, op)


def _delete_through_later(model: Model, me: Agent, spec: ItemsSpec, item_id: str, op: str) -> Process:
    yield model.env.timeout(spec.invalidation_delay_s)
    _delete_through(model, me if me.alive else None, spec, item_id, op)


def _delete_through(model: Model, me: Agent | None, spec: ItemsSpec, item_id: str, op: str) -> None:
    manager = model.admin if me is None else me.manager
    key = global_typed_key(spec.kind, spec.scope, item_id)
    model.operations.counts[op] += 1
    if op == "del_global_key":
        manager.del_global_key(key)
    else:
        manager.del_global_item_typed(spec.kind, spec.scope, item_id)
    if model.caching:
        model.loads.invalidated(key)


def herd_read(model: Model, me: Agent, item_id: str, herd: HerdSpec) -> Process:
    """A read of a hot key, judged like an item read (a hot key is never written: any other answer is stale)."""
    started = model.env.now
    ttl = herd.ttl_s
    key = global_typed_key(HERD_KIND, HERD_SCOPE, item_id)
    value = yield from model.read(me, HERD_KIND, HERD_SCOPE, item_id, key, lambda _v: ttl)
    if value is NO_ANSWER:
        return
    model.item_served(item_id, value, started, "herd", me.node)


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
        model.operations.counts["herd_read"] += 1
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
        """Task ids handed out (the next is ``t{created}``), creations in doubt included."""
        self.doubted = 0
        """Creations that failed in doubt: the task may exist in Mlt, but no worker moves it and no reader asks."""
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
                task_id = self._create()
                if task_id is not None:
                    env.process(self.lifecycle(task_id))

    def _create(self) -> str | None:
        model = self.model
        task_id = f"t{self.created}"
        self.created += 1
        owner = self.rng.choice(model.agents)
        now = model.clock()
        row = {"id": task_id, "status": "created", "owner": owner.name, "attempt": 0, "created_at": now}
        row["updated_at"] = now
        try:
            stored = model.store.put_task(row)
        except CALLER_ERRORS as exc:  # Mlt down: the task is not created (in doubt: its id is not used again)
            write_failed(model, None, exc)
            if in_doubt(exc):
                self.doubted += 1
                model.truth.doubt_counts["writes"] += 1  # no reader asks for it: no doubt to keep
            else:
                self.created -= 1
            return None
        at = model.env.now
        model.truth.created(task_id, stored["version"], at, at + model.truth.lag_s["task"])
        self.rows[task_id] = stored
        self.owners[task_id] = owner
        model.operations.counts["cache_task_row"] += 1
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
        """Mlt write, then ``invalidate_task`` (what ``MwManager.update_task_status`` does, with the sim's clock);
        with ``[mix] task_updates = "update_task_status"`` that public method itself, by the task's owner.

        With ``tasks.invalidation_delay_s`` the invalidation comes that much later (the task's worker in another
        process, heard over the bus); with ``defects.skip_invalidation`` never (a defect).
        """
        model = self.model
        if model.scenario.mix.task_updates == "update_task_status" and not model.scenario.defects.skip_invalidation:
            self._update_status(task_id, status, fields)
            return
        row = dict(self.rows[task_id])
        row.pop("version", None)
        row.update(fields, status=status, updated_at=model.clock())
        try:
            stored = model.store.put_task(row)
        except CALLER_ERRORS as exc:  # Mlt down: this change is lost (the worker goes on with the next one)
            write_failed(model, None, exc)
            if in_doubt(exc):  # ... or lands later: the row is dropped from the caches, as update_task_status does
                model.truth.doubted(task_id)
                self._invalidate(task_id, self.owners[task_id])
            return
        self.rows[task_id] = stored
        now = model.env.now
        truth = model.truth
        if task_id in truth.doubts:
            truth.landed(task_id, stored["version"], truth.version(task_id) + 1)
        owner = self.owners[task_id]
        writer = owner.node if owner.alive else model.admin_node  # who invalidates it (below)
        lag, local = truth.lag_s["task"], truth.local_lag_s["task"]
        truth.superseded(task_id, stored["version"], now, now + lag, writer=writer, local_deadline=now + local)
        self.transitions += 1
        if model.scenario.defects.skip_invalidation:
            return
        if self.spec.invalidation_delay_s > 0:
            model.env.process(self._invalidate_later(task_id, owner))
        else:
            self._invalidate(task_id, owner)

    def _update_status(self, task_id: str, status: str, fields: dict[str, Any]) -> None:
        """``update_task_status`` through the owner's manager (the simulator's as the writer if it left): Mlt's
        change and the invalidation in one call, passed the simulated ``updated_at``."""
        model = self.model
        owner = self.owners[task_id]
        manager = owner.manager if owner.alive else model.admin
        model.operations.counts["update_task_status"] += 1
        if model.charges:
            model.injector.take()
        try:
            stored = manager.update_task_status(task_id, status, updated_at=model.clock(), **fields)
        except CALLER_ERRORS as exc:  # Mlt down: this change is lost (the worker goes on with the next one)
            write_failed(model, None, exc)
            if in_doubt(exc):  # ... or lands later (update_task_status invalidated the row anyway)
                model.truth.doubted(task_id)
                if model.caching:
                    model.loads.invalidated(K.task_key(task_id))
            return
        if stored is None:
            raise RuntimeError(f"update_task_status({task_id!r}) found no task in Mlt")
        self.rows[task_id] = stored
        now, truth = model.env.now, model.truth
        if task_id in truth.doubts:
            truth.landed(task_id, stored["version"], truth.version(task_id) + 1)
        writer = owner.node if owner.alive else model.admin_node
        lag, local = truth.lag_s["task"], truth.local_lag_s["task"]
        truth.superseded(task_id, stored["version"], now, now + lag, writer=writer, local_deadline=now + local)
        self.transitions += 1
        if owner.alive:
            owner.seen.task_evictions += 1
        if model.caching:
            model.loads.invalidated(K.task_key(task_id))

    def _invalidate_later(self, task_id: str, owner: Agent) -> Process:
        yield self.model.env.timeout(self.spec.invalidation_delay_s)
        self._invalidate(task_id, owner)

    def _invalidate(self, task_id: str, owner: Agent) -> None:
        model = self.model
        model.operations.counts["invalidate_task"] += 1
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
        model.operations.counts["get_task"] += 1
        started = model.env.now
        plan = model.lookup_task(me, task_id, K.task_key(task_id))
        if plan.state == "hit":
            row = plan.value
        elif plan.state == "negative":
            row = None
        else:
            store = model.store
            row = yield from model.resolve(me, plan, lambda: store.get_task(task_id, with_meta=True))
            if row is NO_ANSWER:
                return
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
            model.operations.counts["prewarm"] += 1
            manager = model.agents[turn].manager
            try:
                if stats is None:
                    manager.prewarm(top_n)
                else:
                    with injected(stats):
                        manager.prewarm(top_n)
            except CALLER_ERRORS as exc:  # a load it made found Mlt down
                now = model.env.now
                model.errors.record("prewarm", now, now, exc)
            turn += 1


def heartbeat(model: Model, me: Agent, every_s: float) -> Process:
    """The agent's heartbeat: ``memory_metrics()`` every ``every_s`` while it lives."""
    while True:
        yield model.env.timeout(every_s)
        if not me.alive:
            return
        model.operations.counts["memory_metrics"] += 1
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


def crash(model: Model, window: FaultWindow, start: Callable[[Agent], None]) -> Process:
    """``agent_crash``: at ``at_s`` that many agents (a seeded choice) die abruptly; at ``end_s`` as many join cold."""
    rng = random.Random(f"{model.seed}:crash:{window.at_s:g}")
    yield model.env.timeout(window.at_s)
    n = min(window.crashes, len(model.agents))
    for victim in rng.sample(model.agents, n):
        model.crash_agent(victim)
        log.info("Agent %s crashed", victim.name)
    yield model.env.timeout(window.for_s)
    for _ in range(n):
        start(model.add_agent())


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
    for window in scenario.faults:
        if window.kind == "agent_crash":
            env.process(crash(model, window, start))
    return start
