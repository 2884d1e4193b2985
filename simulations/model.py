"""The simulated fleet: agents (real ``MwManager`` objects) on nodes, one L2, one Mlt, and the read path in sim time.

Each node is a cluster of its own (``mw.cluster.cluster_for(..., name=node)``), as a process of its own would be: a
write reaches the tiers of the other nodes only over the bus (:mod:`simulations.sim_bus`, or Redis pub/sub when no
simulated bus is given).

A read first asks the runtime's split-phase read-through (``begin_load``). A hit is answered at once. A miss that
leads queries the real Mlt, then holds its lease for a simulated latency before ``finish_load``, so agents arriving
in that window really find the lease held and wait in simulated time (woken when the leader lands, or by polling as
the runtime's own waiters do). Every step reports to the collectors of :mod:`simulations.measure`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from typing import Any

import simpy

from mw import MwConfig, MwManager
from mw import keys as K
from mw.cluster import Cluster, cluster_for
from mw.errors import LoadTimeout, MltUnavailable, TierUnavailable
from mw.mlt import MISSING, MltStore
from mw.protocol import POLL_S
from mw.readthrough import LoadPlan
from simulations.distributions import Latency
from simulations.fault_windows import WindowInjector
from simulations.measure import (
    CallerErrors,
    DoublePrefix,
    Heartbeats,
    LoadTracker,
    Operations,
    Outcomes,
    Seen,
    StaleLog,
    TaskTTLs,
    Waits,
)
from simulations.scenario import Scenario
from simulations.sim_bus import SimBus, redis_bus_summary
from simulations.truth import Truth

Loader = Callable[[], Any]
TTLFor = Callable[[Any], "float | None"]
Process = Generator[simpy.Event, Any, Any]

START_EPOCH = 1_800_000_000.0
"""Simulated time 0 as epoch seconds (a fixed date: runs do not depend on when they start)."""

TASK_KIND, TASK_SCOPE = "task", "by_id"

CALLER_ERRORS = (MltUnavailable, LoadTimeout, TierUnavailable)
"""What the runtime may raise to a reader or writer on purpose: counted per fault window (the verdict's
``no_caller_errors``), not a stop of the run. Anything else is a bug and stops the run with its traceback."""


class _NoAnswer:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ANSWER"


NO_ANSWER: Any = _NoAnswer()
"""What :meth:`Model.resolve` gives a read that got no value: the runtime raised (counted), or its agent crashed."""


class Agent:
    __slots__ = ("alive", "born", "died", "l0", "l1", "manager", "name", "node", "owed", "rng", "seen")

    def __init__(self, name: str, node: str, manager: MwManager, rng: random.Random, born: float) -> None:
        self.name = name
        self.node = node
        self.manager = manager
        self.l0 = manager.l0
        self.l1 = manager.l1
        self.rng = rng
        self.alive = True
        self.born = born
        self.died: float | None = None
        self.owed = 0.0
        """Simulated seconds this agent's last runtime calls cost (slow L2, Mlt deadlines), not waited yet."""
        self.seen = Seen()
        """What this agent's reads ended with, counted by the simulator (the runtime counts its own)."""


class Model:
    """Shared state of one run: the environment, the agents, Mlt, the truth and the collectors."""

    def __init__(
        self,
        env: simpy.Environment,
        scenario: Scenario,
        config: MwConfig,
        *,
        start_epoch: float = START_EPOCH,
        bus: SimBus | None = None,
        cross_node_lag_s: float = 0.0,
    ) -> None:
        self.env = env
        self.scenario = scenario
        self.config = config
        self.start_epoch = start_epoch
        self.clock: Callable[[], float] = lambda: start_epoch + env.now
        self.seed = scenario.run.seed
        self.latency = Latency(scenario.mlt, random.Random(f"{self.seed}:latency"))
        self.truth = Truth()
        self.outcomes = Outcomes()
        self.operations = Operations()
        self.injector = WindowInjector(
            scenario.faults,
            lambda: env.now,
            redis_timeout_s=config.redis_timeout_s,
            mlt_timeout_s=config.mlt_timeout_s,
        )
        """The scenario's ``[[faults]]`` in the runtime's seam (installed by the runner for the run)."""
        self.charges = self.injector.charges
        self.loads = LoadTracker(self.injector.l2_outages())
        self.errors = CallerErrors([(w.kind, w.at_s, w.end_s) for w in scenario.faults], config.mlt_timeout_s)
        self.waits = Waits(config.load_timeout_s + 1.0)
        self.open_reads: dict[LoadPlan, tuple[Agent, float]] = {}
        """Reads that missed and have no answer yet, and when they began (a hang is one that never gets one)."""
        self.crashed: list[tuple[LoadPlan, Agent, Any]] = []
        """Lead plans of crashed agents: never finished in the run (their leases expire instead)."""
        self.resume = [
            {"start_s": w.at_s, "end_s": w.end_s, "misses_after": 0, "loads_after": 0}
            for w in scenario.faults
            if w.kind == "mlt_down"
        ]
        """Per ``mlt_down`` window: reads that missed after it, and the Mlt loads that then succeeded."""
        self.error_allowed = False
        """Whether the last caller error recorded was allowed (read right after it, before any yield)."""
        self.lease_from: dict[LoadPlan, float] = {}
        """When each lead plan in flight got its lease (its PX runs from then)."""
        self.crash_leases: dict[str, dict[str, Any]] = {}
        """Per key, the lease a crashed agent left in L2 and what became of it (:meth:`crash_agent`)."""
        self.stale = StaleLog()
        self.task_ttls = TaskTTLs()
        self.heartbeats = Heartbeats(scenario.heartbeat.every_s)
        self.double_prefix = DoublePrefix()
        self.agents: list[Agent] = []
        self.retired: list[Agent] = []
        self.landed: dict[str, simpy.Event] = {}
        self.rate_factor = 1.0
        self.leading: dict[LoadPlan, tuple[Agent, Any]] = {}
        """Lead plans whose load ran and whose simulated latency has not: finished by :meth:`finish_leads`."""
        self.l1_visible = True
        """Whether the simulator can look into the node tiers itself (not Ray's node actors)."""
        self.on_fill: dict[str, Callable[[Agent, str, float], None]] = {}
        """Hooks by item kind, called after a load filled a key (the herd schedules itself on expiry)."""
        self._agent_seq = 0
        self._nodes = [f"node-{i}" for i in range(max(1, scenario.run.nodes))]
        self.admin_node = self._nodes[0]
        """The node of :attr:`admin` (the simulator's own writes when their agent is gone)."""
        self.reader: str | None = None
        """The node of the read that :meth:`lookup` or :meth:`resolve` just answered, for :meth:`item_served` called
        right after it (no other process runs in between): the oracle holds a reader on the writer's node to that
        writer's in-process bound."""
        self.bus = bus
        """What carries the nodes' invalidations (``None``: Redis pub/sub, each cluster's subscriber thread)."""
        self.cross_node_lag_s = cross_node_lag_s if len(self._nodes) > 1 else 0.0
        """The tolerance of a writer on another node: the bound of the bus's lag (0 with one node: every writer is
        in the reader's process)."""
        self.clusters: dict[str, Cluster] = {
            node: cluster_for(config, self.clock, name=node, transport=bus) for node in self._nodes
        }
        """One cluster per node, as one process per node would have."""
        if bus is not None:
            for cluster in self.clusters.values():  # every bus listens from the start, in node order
                _ = cluster.bus
        self.caching = config.enabled
        self.negative_ttl_s = config.negative_ttl_s
        first = self._manager("bootstrap", self._nodes[0])
        self.cluster = first.cluster
        self.store: MltStore = first.cluster.mlt
        self.admin = first
        """A manager that belongs to no agent: the simulator's own hand on the shared tiers (writers, scans)."""

    # --- agents ---------------------------------------------------------------------------------------
    def _manager(self, name: str, node: str) -> MwManager:
        return MwManager(name, node=node, cluster=self.clusters[node])

    def doubt_summary(self) -> dict[str, int]:
        """Writes in doubt (:meth:`simulations.truth.Truth.doubt_summary`)."""
        return self.truth.doubt_summary()

    def bus_summary(self) -> dict[str, Any]:
        """``result["runs"][...]["bus"]``: the simulated bus's figures, or the Redis buses' flushes."""
        if self.bus is not None:
            return {**self.bus.summary(), "pubsub": self.config.pubsub}
        buses = [c.bus for c in self.clusters.values() if c.bus is not None]
        return redis_bus_summary(
            self.config.pubsub,
            [b.lag.summary() for b in buses],
            sum(b.received for b in buses),
            sum(b.flushes for b in buses),
        )

    def close_clusters(self) -> None:
        """Close every node's cluster (pools, connections, its bus)."""
        for cluster in self.clusters.values():
            cluster.close()

    def add_agent(self) -> Agent:
        seq = self._agent_seq
        self._agent_seq += 1
        name = f"agent-{seq}"
        node = self._nodes[seq % len(self._nodes)]
        agent = Agent(name, node, self._manager(name, node), random.Random(f"{self.seed}:{name}"), self.env.now)
        self.agents.append(agent)
        return agent

    def remove_agent(self, agent: Agent) -> None:
        agent.alive = False
        agent.died = self.env.now
        self.agents.remove(agent)
        self.retired.append(agent)
        agent.manager.close()

    def all_agents(self) -> list[Agent]:
        return self.retired + self.agents

    # --- the read path --------------------------------------------------------------------------------
    def lookup(self, agent: Agent, kind: str, scope: str, item_id: str, key: str) -> LoadPlan:
        """``begin_load``; a hit is credited to the tier that held ``key`` when the read began (looked at, not
        asked: the runtime's tier counters are what the telemetry check compares against this)."""
        if key in agent.l0:  # _holder's first look, written out: most reads end here
            tier = before = 0
        else:
            tier = self._below_l0(agent, key)
            before = agent.manager.telemetry.l1_hits if tier < 0 else 0
        if self.charges:
            self.injector.take()
        try:
            plan = agent.manager.begin_load(kind, scope, item_id)
        except CALLER_ERRORS as exc:
            return self._lookup_failed(agent, key, tier, exc)
        if self.charges:
            agent.owed += self.injector.take()
        if tier == 0 and plan.state == "hit" and not plan.shared:  # what _began credits such a read, inline
            self.outcomes.l0 += 1
            agent.seen.l0 += 1
        else:
            self._began(agent, plan, tier if tier >= 0 else self._l1_or_l2(agent, before))
        self.reader = agent.node
        return plan

    def _lookup_failed(self, agent: Agent, key: str, tier: int, exc: Exception) -> LoadPlan:
        """``begin_load`` raised: never allowed (a hit, or the decision to load, needs no Mlt). The read gets no
        answer; whether a tier held the key (L0, L1: looked at) says if it was a hit that failed."""
        if self.charges:
            agent.owed += self.injector.take()
        now = self.env.now
        self.errors.record("read", now, now, exc, lookup=True, hit=tier in (0, 1))
        return LoadPlan("failed", key)

    def read(
        self, agent: Agent, kind: str, scope: str, item_id: str, key: str, ttl_for: TTLFor | None = None
    ) -> Process:
        """One read by key, to its answer: :meth:`lookup`, then :meth:`resolve` of a miss from Mlt. The process's
        value is the answer (``None`` for absent), :data:`NO_ANSWER` if the runtime raised."""
        plan = self.lookup(agent, kind, scope, item_id, key)
        state = plan.state
        if state == "hit":
            return plan.value
        if state == "negative":
            return None
        return (yield from self.resolve(agent, plan, self.mlt_item(kind, scope, item_id), ttl_for))

    def lookup_task(self, agent: Agent, task_id: str, key: str) -> LoadPlan:
        """``begin_task``: the runtime's own status TTL applies to what the read loads."""
        tier = self._holder(agent, key)
        before = agent.manager.telemetry.l1_hits if tier < 0 else 0
        if self.charges:
            self.injector.take()
        try:
            plan = agent.manager.begin_task(task_id)
        except CALLER_ERRORS as exc:
            return self._lookup_failed(agent, key, tier, exc)
        if self.charges:
            agent.owed += self.injector.take()
        self._began(agent, plan, tier if tier >= 0 else self._l1_or_l2(agent, before))
        state = plan.state
        if (state == "hit" or state == "negative") and not plan.shared:
            agent.seen.task_hits += 1
        else:
            agent.seen.task_misses += 1
        return plan

    def lookup_or_load(
        self, agent: Agent, kind: str, scope: str, item_id: str, key: str, ttl_s: float
    ) -> tuple[LoadPlan, bool]:
        """``begin_get_or_load``, counted as :meth:`lookup` is, and whether it is an early refresh (XFetch).

        A refresh is a ``lead`` plan for a key some tier answered: a hit for the runtime, loaded by :meth:`refresh`.
        It is told from a miss's ``lead`` by L0: the hit is there (it was, or the read from L1/L2 just filled it),
        a miss leaves nothing.
        """
        tier = self._holder(agent, key)
        before = agent.manager.telemetry.l1_hits if tier < 0 else 0
        if self.charges:
            self.injector.take()
        try:
            plan = agent.manager.begin_get_or_load(kind, scope, item_id, ttl_s)
        except CALLER_ERRORS as exc:
            return self._lookup_failed(agent, key, tier, exc), False
        if self.charges:
            agent.owed += self.injector.take()
        tier = tier if tier >= 0 else self._l1_or_l2(agent, before)
        if plan.state == "lead" and key in agent.l0:
            self._began(agent, LoadPlan("hit", key), tier)
            agent.seen.refreshes += 1
            return plan, True
        self._began(agent, plan, tier)
        return plan, False

    def refresh(self, agent: Agent, plan: LoadPlan, load: Loader) -> Process:
        """Load an early refresh's value in simulated time and finish its plan (which then holds the value)."""
        if self.caching:
            self.loads.refreshing(plan.key)
        now = self.env.now
        return (yield from self._lead(agent, plan, load, None, now, now))

    def lookup_many(
        self, agent: Agent, kind: str, scope: str, item_ids: list[str], keys: list[str]
    ) -> dict[str, Any] | None:
        """``get_many_typed`` of distinct ids, counted per key as the runtime counts a batch: a tier's hit, else a
        miss (left out of the answer). The tier of each is looked at before the call, as for :meth:`lookup`.

        The ids the agent's L0 holds go first (a batch's order is the caller's; a dict comes back): the runtime
        fills L0 from L1 as it walks the batch, and a fill must not evict a key counted as an L0 hit further on.
        ``None`` when the call raised (recorded as a lookup error: a batch needs no Mlt).
        """
        if not self.l1_visible:
            raise RuntimeError("a batch's tiers are looked at per key: the Ray engine runs no batches")
        tiers = [self._holder(agent, key) for key in keys]
        order = sorted(range(len(keys)), key=lambda i: tiers[i] != 0)
        if self.charges:
            self.injector.take()
        try:
            found = agent.manager.get_many_typed(kind, scope, [item_ids[i] for i in order])
        except CALLER_ERRORS as exc:
            self._lookup_failed(agent, keys[order[0]], tiers[order[0]], exc)
            return None
        if self.charges:
            agent.owed += self.injector.take()
        o, seen = self.outcomes, agent.seen
        for i in order:
            if item_ids[i] not in found:
                seen.missed += 1
                o.batch_missed += 1
                continue
            self._credit(seen, tiers[i])
        return found

    def _credit(self, seen: Seen, tier: int) -> None:
        """A hit answered by ``tier`` (0, 1, 2), in the fleet's count and the agent's."""
        o = self.outcomes
        if tier == 0:
            o.l0 += 1
            seen.l0 += 1
        elif tier == 1:
            o.l1 += 1
            seen.l1 += 1
        else:
            o.l2 += 1
            seen.l2 += 1

    @staticmethod
    def _l1_or_l2(agent: Agent, l1_hits_before: int) -> int:
        """Where a node tier cannot be looked into: L1 if the runtime's L1 counter moved during the read."""
        return 1 if agent.manager.telemetry.l1_hits != l1_hits_before else 2

    def _holder(self, agent: Agent, key: str) -> int:
        """0, 1, 2: the first tier holding an unexpired copy of ``key`` (L2 if neither local tier does); -1 when
        the node tier is another process's (Ray's node actor: a look would be a remote call that the runtime
        counts), and then the L1/L2 split of a hit is read from the runtime's L1 counter."""
        if key in agent.l0:
            return 0
        return self._below_l0(agent, key)

    def _below_l0(self, agent: Agent, key: str) -> int:
        """:meth:`_holder` for a key the agent's L0 does not hold."""
        if not self.l1_visible:
            return -1
        expire_at = agent.l1.expire_at(key)
        if expire_at is not None and expire_at > self.clock():
            return 1
        return 2

    def _began(self, agent: Agent, plan: LoadPlan, tier: int) -> None:
        """Count how the read began: a tier's answer, a negative one, or a miss (another caller's value counts as
        a miss answered by it at once; a ``wait``/``lead`` one ends in :meth:`resolve`)."""
        o, seen = self.outcomes, agent.seen
        state = plan.state
        if state != "hit" and state != "negative":
            seen.missed += 1
            return
        if plan.shared:
            seen.missed += 1
            o.coalesced += 1
            seen.coalesced += 1
            return
        if state == "hit":
            self._credit(seen, tier)
        else:
            o.negative += 1
            seen.negative += 1

    def resolve(self, agent: Agent, plan: LoadPlan, load: Loader, ttl_for: TTLFor | None = None) -> Process:
        """Finish a ``lead`` or ``wait`` plan in simulated time; the process's value is what the read returns,
        :data:`NO_ANSWER` when the runtime raised (counted in :attr:`errors`) or the agent crashed meanwhile."""
        if plan.state == "failed":
            return NO_ANSWER
        started = self.env.now
        self.open_reads[plan] = (agent, started)
        for window in self.resume:
            if started >= window["end_s"]:
                window["misses_after"] += 1
        try:
            value = yield from self._resolve(agent, plan, load, ttl_for, started)
        finally:
            self.open_reads.pop(plan, None)
        self.reader = agent.node
        if agent.alive:
            self.waits.answered(started, self.env.now)
            if self.crash_leases:  # an error the windows allow (Mlt down) is that reader's answer
                self._crash_key_read(plan.key, started, value is not NO_ANSWER or self.error_allowed)
        return value

    def _resolve(self, agent: Agent, plan: LoadPlan, load: Loader, ttl_for: TTLFor | None, started: float) -> Process:
        acquired = started
        if agent.owed:
            leads = plan.state == "lead"
            if leads:  # holding its lease while its round trips elapse: a crash or the run's end may find it here
                self.leading[plan] = (agent, ConnectionError("the load had not started"))
            yield from self._pay(agent)
            if not agent.alive:
                return NO_ANSWER
            if leads:
                del self.leading[plan]
        while plan.state == "wait":
            landed = self.landed.get(plan.key)
            poll = self.env.timeout(POLL_S)
            yield poll if landed is None else (landed | poll)
            if not agent.alive:  # crashed while it waited: its read never returns
                return NO_ANSWER
            if self.charges:
                self.injector.take()
            try:
                plan = agent.manager.poll_load(plan)
                acquired = self.env.now
            except CALLER_ERRORS as exc:  # the load it joined failed, or it waited past its deadline
                self.error_allowed = self.errors.record("read", started, self.env.now, exc)
                return NO_ANSWER
            if self.charges:
                agent.owed += self.injector.take()
                if agent.owed:
                    yield from self._pay(agent)
        if plan.state == "hit":
            self.outcomes.coalesced += 1
            agent.seen.coalesced += 1
            return plan.value
        if plan.state == "negative":
            self.outcomes.coalesced += 1
            agent.seen.coalesced += 1
            return None
        self.outcomes.load += 1
        agent.seen.load += 1
        return (yield from self._lead(agent, plan, load, ttl_for, started, acquired))

    def _pay(self, agent: Agent) -> Process:
        """Wait what the agent's calls cost (slow L2 round trips, an Mlt deadline) before it goes on."""
        owed, agent.owed = agent.owed, 0.0
        yield self.env.timeout(owed)

    def _load(self, agent: Agent, plan: LoadPlan, load: Loader, started: float) -> Process:
        """Run the Mlt load; on an error Mlt raised, wait what the failed call cost and end the plan with it
        (:meth:`MwManager.fail_load`: nothing cached, the lease released). The value, or :data:`NO_ANSWER`."""
        if self.charges:
            self.injector.take()
        try:
            return load()
        except CALLER_ERRORS as exc:
            error = exc
        if self.charges:
            agent.owed += self.injector.take()
        if self.scenario.defects.absent_on_mlt_error:
            return None  # the defect: the loader took the error for "not found"
        self.leading[plan] = (agent, error)
        if agent.owed:
            yield from self._pay(agent)
        if not agent.alive:
            return NO_ANSWER
        del self.leading[plan]
        agent.manager.fail_load(plan, error)
        if plan.state == "hit":  # an early refresh: the runtime serves the still valid cached value, no error
            agent.seen.refreshes -= 1  # and counts no refresh
            return plan.value
        self.error_allowed = self.errors.record("read", started, self.env.now, error)
        return NO_ANSWER

    def _lead(
        self, agent: Agent, plan: LoadPlan, load: Loader, ttl_for: TTLFor | None, started: float, acquired: float
    ) -> Process:
        key = plan.key
        caching = self.caching
        if not caching:  # the baseline: every read is a query; nobody waits, nothing is filled
            value = yield from self._load(agent, plan, load, started)
            if value is NO_ANSWER:
                return value
            delay = self.latency()
            if delay > 0:
                self.leading[plan] = (agent, value)
                yield self.env.timeout(delay)
                del self.leading[plan]
            agent.manager.finish_load(plan, value)
            return value
        stampede = self.loads.started(
            key, acquired, agent.node
        )  # judged when its lease was decided (before paying for it)
        mine = None
        if key not in self.landed:
            mine = self.landed[key] = self.env.event()
        lease_from = self.lease_from
        lease_from[plan] = acquired
        value = yield from self._load(agent, plan, load, started)
        if value is NO_ANSWER or plan.state == "hit":  # failed; or a failed refresh that served the cached value
            if agent.alive:
                leaseless = bool(self.loads.outages) and self.loads.in_outage(acquired)
                self.loads.failed(key, stampede, agent.node, leaseless)
                del lease_from[plan]
            self._landed(key, mine)
            return value
        if self.crash_leases:
            self._crash_key_loaded(key, self.env.now)
        for window in self.resume:
            if self.env.now >= window["end_s"]:
                window["loads_after"] += 1
        delay = self.latency()
        if delay > 0:
            self.leading[plan] = (agent, value)
            yield self.env.timeout(delay)
            if not agent.alive:  # crashed meanwhile: the load never finishes (crash_agent took the plan)
                self._landed(key, mine)
                return NO_ANSWER
            del self.leading[plan]
        del lease_from[plan]
        ttl = None if ttl_for is None else ttl_for(value)
        if self.charges:
            self.injector.take()
        filled = agent.manager.finish_load(plan, value, ttl_s=ttl, delta=delay)
        if not filled and plan.token is not None and self.loads.outages:
            self._expire_lease(key, plan.token, acquired)  # its release may have failed with L2 (a fault window)
        self._finished(agent, key, value, filled, acquired)
        self._landed(key, mine)
        if self.charges:
            agent.owed += self.injector.take()
            if agent.owed:
                yield from self._pay(agent)
        return value

    def _landed(self, key: str, mine: simpy.Event | None) -> None:
        """Wake the agents waiting on this load (it landed, or failed: they look again at once)."""
        if mine is not None:
            del self.landed[key]
            mine.succeed()

    def finish_leads(self) -> None:
        """At the end of a run, finish the loads still in their simulated latency, while the tiers are open.

        Left to the garbage collector, their plans would release their leases whenever it runs, in whatever thread:
        maybe much later, in someone else's test, one 2 s wait after another.
        """
        for plan, (agent, value) in list(self.leading.items()):
            if plan.state == "lead":
                if isinstance(value, Exception):
                    agent.manager.fail_load(plan, value)
                else:
                    agent.manager.finish_load(plan, value)
        self.leading.clear()
        for plan, agent, _value in self.crashed:  # their leases: expired in simulated time, or released now
            if plan.state == "lead":
                agent.manager.fail_load(plan, ConnectionError(f"{agent.name} crashed (simulated)"))
        self.crashed.clear()

    def hung_reads(self) -> int:
        """Reads of live agents still without an answer at the end, begun more than the wait bound before it."""
        end, bound = self.env.now, self.waits.bound_s
        return sum(1 for agent, started in self.open_reads.values() if agent.alive and end - started > bound)

    # --- agent crashes ----------------------------------------------------------------------------------
    def crash_agent(self, agent: Agent) -> None:
        """The agent dies abruptly: no ``close()``, its loads never finish, the leases it holds stay in L2.

        Its process's single flight dies with it: the loads it led are abandoned in its node's cluster, so the others
        meet its lease like any other process would. Redis expires that lease after
        its PX on Redis's clock; the simulator's clock is not Redis's, so it expires it at the lease's
        simulated PX instead (a compare-and-delete on the dead holder's token, as the expiry would).
        """
        now = self.env.now
        agent.alive = False
        agent.died = now
        self.agents.remove(agent)
        self.retired.append(agent)
        for plan, (owner, value) in list(self.leading.items()):
            if owner is not agent:
                continue
            del self.leading[plan]
            self.crashed.append((plan, agent, value))
            agent.manager.cluster.flight.abandon_key(plan.key)  # its node's process
            record = self.crash_leases[plan.key] = {"key": plan.key, "agent": agent.name, "crashed_at": now}
            record.update(lease_from=self.lease_from.pop(plan, now), expires_at=None, taken_over_at=None)
            record.update(readers=0, answered=0)
            if plan.token is None:  # loaded without a lease (L2 down): nothing in L2 to expire
                record["expires_at"] = now
                self.loads.lost(plan.key, agent.node, leaseless=True)
            else:
                self._expire_lease(plan.key, plan.token, record["lease_from"], record, agent.node)

    def _expire_lease(
        self, key: str, token: bytes, taken_at: float, record: dict[str, Any] | None = None, node: str | None = None
    ) -> None:
        """Expire a lease its holder will not release (it crashed; or L2 failed its release) at its simulated PX.

        fakeredis (and a real Redis outside ``--realtime``) counts PX on the wall clock, which is far slower than
        the simulated one: left to it, such a lease would outlive every waiter's deadline. A compare-and-delete on
        the holder's token is what the expiry does; a lease already gone is left alone.
        """
        self.env.process(self._lease_expires(key, token, taken_at + self.config.lease_ttl_s, record, node))

    def _lease_expires(
        self, key: str, token: bytes, at: float, record: dict[str, Any] | None, node: str | None
    ) -> Process:
        yield self.env.timeout(max(0.0, at - self.env.now))
        while True:
            try:
                self.cluster.leases.release(K.lease_key(key), token)
                break
            except TierUnavailable:  # L2 down (a fault window): it is gone when L2 answers again
                yield self.env.timeout(POLL_S)
        if record is not None:
            record["expires_at"] = self.env.now
            self.loads.lost(key, node)

    def _crash_key_loaded(self, key: str, at: float) -> None:
        record = self.crash_leases.get(key)
        if record is not None and record["taken_over_at"] is None and at >= record["crashed_at"]:
            record["taken_over_at"] = at

    def _crash_key_read(self, key: str, started: float, answered: bool) -> None:
        record = self.crash_leases.get(key)
        if record is not None and started >= record["crashed_at"]:
            record["readers"] += 1
            record["answered"] += answered

    def _finished(self, agent: Agent, key: str, value: Any, filled: bool, decided: float | None = None) -> None:
        now = self.env.now
        local = decided is not None and self.loads.outages and self.loads.in_outage(decided)
        if value is None:
            self.loads.finished(key, now, True, None if local else now + self.negative_ttl_s, agent.node, bool(local))
            return
        expire_at = agent.manager.l0.expire_at(key) if filled else None
        valid_until = None if expire_at is None else expire_at - self.start_epoch
        self.loads.finished(key, now, False, None if local else valid_until, agent.node, bool(local))
        if filled and valid_until is not None:
            kind = K.parse_key(key).kind or ""
            hook = self.on_fill.get(kind)
            if hook is not None:
                hook(agent, key, valid_until)
            if kind == TASK_KIND:
                self._task_cached(agent, key, value, valid_until - now)

    # --- tasks ----------------------------------------------------------------------------------------
    def _task_cached(self, agent: Agent, key: str, row: dict[str, Any], ttl_s: float) -> None:
        status = str(row.get("status", ""))
        self.task_ttls.cached(status, ttl_s)
        if status == "running":
            try:
                pttl = agent.manager.l2.pttl(key)
            except TierUnavailable:  # L2 down (a fault window): the row is in no L2 copy to probe
                return
            self.task_ttls.probed(status, pttl, ttl_s)

    def task_served(self, agent: Agent, key: str, record: str, row: dict[str, Any] | None, started_at: float) -> None:
        """Judge a task read: a row against Mlt's versions and its remaining life against the status TTL; ``None``
        (or a negative answer) against the task's existence."""
        truth, stale = self.truth, self.stale
        stale.checked["task"] += 1
        if row is None:
            stale.absent_answers["task"] += 1
            verdict = truth.judge_absent(record, started_at)
            if verdict:
                stale.flag("task", verdict, record, 0, truth.version(record), self.env.now)
            return
        version = row["version"]
        verdict = truth.judge(record, version, started_at, agent.node)
        if verdict:
            stale.flag("task", verdict, record, version, truth.version(record), self.env.now)
        expire_at = agent.manager.l0.expire_at(key)
        if expire_at is not None:
            self.task_ttls.served(str(row.get("status", "")), expire_at - self.clock())

    def item_served(
        self, record: str, value: str | None, started_at: float, what: str = "item", reader: str | None = None
    ) -> int:
        """Judge an item or herd read: a value (``"<version>|..."``) against Mlt's versions, ``None`` (or a negative
        answer) against the record's existence; returns the verdict. A fresh value costs a dict lookup and a compare.

        ``reader``: the reader's node (default: the one of the :meth:`lookup` or :meth:`resolve` that just answered).
        """
        truth, stale = self.truth, self.stale
        stale.checked[what] += 1
        if reader is None:
            reader = self.reader
        self.reader = None
        if value is not None and truth.latest.get(record) == value:
            return 0
        if value is None:
            stale.absent_answers[what] += 1
            version = 0
            verdict = truth.judge_absent(record, started_at)
        else:
            version = int(value[: value.index("|")])
            verdict = truth.judge(record, version, started_at, reader)
        if verdict:
            stale.flag(what, verdict, record, version, truth.version(record), self.env.now)
        return verdict

    def mlt_item(self, kind: str, scope: str, item_id: str) -> Loader:
        store = self.store

        def load() -> Any:
            found = store.get_item(kind, scope, item_id)
            return None if found is MISSING else found

        return load
