"""The simulated fleet: agents (real ``MwManager`` objects) on nodes, one L2, one Mlt, and the read path in sim time.

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
from mw.errors import TierUnavailable
from mw.mlt import MISSING, MltStore
from mw.protocol import POLL_S
from mw.readthrough import LoadPlan
from simulations.distributions import Latency
from simulations.measure import (
    DoublePrefix,
    Heartbeats,
    LoadTracker,
    Operations,
    Outcomes,
    Seen,
    StaleLog,
    TaskTTLs,
)
from simulations.scenario import Scenario
from simulations.truth import Truth

Loader = Callable[[], Any]
TTLFor = Callable[[Any], "float | None"]
Process = Generator[simpy.Event, Any, Any]

START_EPOCH = 1_800_000_000.0
"""Simulated time 0 as epoch seconds (a fixed date: runs do not depend on when they start)."""

TASK_KIND, TASK_SCOPE = "task", "by_id"


class Agent:
    __slots__ = ("alive", "born", "died", "l0", "l1", "manager", "name", "node", "rng", "seen")

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
        self.loads = LoadTracker([(w.at_s, w.end_s) for w in scenario.faults if w.kind == "l2_down"])
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
        self.caching = config.enabled
        self.negative_ttl_s = config.negative_ttl_s
        first = self._manager("bootstrap", self._nodes[0])
        self.cluster = first.cluster
        self.store: MltStore = first.cluster.mlt
        self.admin = first
        """A manager that belongs to no agent: the simulator's own hand on the shared tiers (writers, scans)."""

    # --- agents ---------------------------------------------------------------------------------------
    def _manager(self, name: str, node: str) -> MwManager:
        return MwManager(name, self.config, node=node, clock=self.clock)

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
        tier = self._holder(agent, key)
        before = agent.manager.telemetry.l1_hits if tier < 0 else 0
        plan = agent.manager.begin_load(kind, scope, item_id)
        self._began(agent, plan, tier if tier >= 0 else self._l1_or_l2(agent, before))
        return plan

    def lookup_task(self, agent: Agent, task_id: str, key: str) -> LoadPlan:
        """``begin_task``: the runtime's own status TTL applies to what the read loads."""
        tier = self._holder(agent, key)
        before = agent.manager.telemetry.l1_hits if tier < 0 else 0
        plan = agent.manager.begin_task(task_id)
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
        plan = agent.manager.begin_get_or_load(kind, scope, item_id, ttl_s)
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
        return (yield from self._lead(agent, plan, load, None))

    def lookup_many(self, agent: Agent, kind: str, scope: str, item_ids: list[str], keys: list[str]) -> dict[str, Any]:
        """``get_many_typed`` of distinct ids, counted per key as the runtime counts a batch: a tier's hit, else a
        miss (left out of the answer). The tier of each is looked at before the call, as for :meth:`lookup`.

        The ids the agent's L0 holds go first (a batch's order is the caller's; a dict comes back): the runtime
        fills L0 from L1 as it walks the batch, and a fill must not evict a key counted as an L0 hit further on.
        """
        if not self.l1_visible:
            raise RuntimeError("a batch's tiers are looked at per key: the Ray engine runs no batches")
        tiers = [self._holder(agent, key) for key in keys]
        order = sorted(range(len(keys)), key=lambda i: tiers[i] != 0)
        found = agent.manager.get_many_typed(kind, scope, [item_ids[i] for i in order])
        o, seen = self.outcomes, agent.seen
        for i in order:
            if item_ids[i] not in found:
                seen.missed += 1
                o.batch_missed += 1
                continue
            tier = tiers[i]
            if tier == 0:
                o.l0 += 1
                seen.l0 += 1
            elif tier == 1:
                o.l1 += 1
                seen.l1 += 1
            else:
                o.l2 += 1
                seen.l2 += 1
        return found

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
            if tier == 0:
                o.l0 += 1
                seen.l0 += 1
            elif tier == 1:
                o.l1 += 1
                seen.l1 += 1
            else:
                o.l2 += 1
                seen.l2 += 1
        else:
            o.negative += 1
            seen.negative += 1

    def resolve(self, agent: Agent, plan: LoadPlan, load: Loader, ttl_for: TTLFor | None = None) -> Process:
        """Finish a ``lead`` or ``wait`` plan in simulated time; the process's value is what the read returns."""
        while plan.state == "wait":
            landed = self.landed.get(plan.key)
            poll = self.env.timeout(POLL_S)
            yield poll if landed is None else (landed | poll)
            plan = agent.manager.poll_load(plan)
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
        return (yield from self._lead(agent, plan, load, ttl_for))

    def _lead(self, agent: Agent, plan: LoadPlan, load: Loader, ttl_for: TTLFor | None) -> Process:
        key = plan.key
        caching = self.caching
        if not caching:  # the baseline: every read is a query; nobody waits, nothing is filled
            value = load()
            delay = self.latency()
            if delay > 0:
                self.leading[plan] = (agent, value)
                yield self.env.timeout(delay)
                del self.leading[plan]
            agent.manager.finish_load(plan, value)
            return value
        self.loads.started(key, self.env.now)
        value = load()
        mine = None
        if key not in self.landed:
            mine = self.landed[key] = self.env.event()
        delay = self.latency()
        if delay > 0:
            self.leading[plan] = (agent, value)
            yield self.env.timeout(delay)
            del self.leading[plan]
        ttl = None if ttl_for is None else ttl_for(value)
        filled = agent.manager.finish_load(plan, value, ttl_s=ttl, delta=delay)
        self._finished(agent, key, value, filled)
        if mine is not None:
            del self.landed[key]
            mine.succeed()
        return value

    def finish_leads(self) -> None:
        """At the end of a run, finish the loads still in their simulated latency, while the tiers are open.

        Left to the garbage collector, their plans would release their leases whenever it runs, in whatever thread:
        maybe much later, in someone else's test, one 2 s wait after another.
        """
        for plan, (agent, value) in list(self.leading.items()):
            if plan.state == "lead":
                agent.manager.finish_load(plan, value)
        self.leading.clear()

    def _finished(self, agent: Agent, key: str, value: Any, filled: bool) -> None:
        now = self.env.now
        if value is None:
            self.loads.finished(key, now, True, now + self.negative_ttl_s)
            return
        expire_at = agent.manager.l0.expire_at(key) if filled else None
        valid_until = None if expire_at is None else expire_at - self.start_epoch
        self.loads.finished(key, now, False, valid_until)
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
        verdict = truth.judge(record, version, started_at)
        if verdict:
            stale.flag("task", verdict, record, version, truth.version(record), self.env.now)
        expire_at = agent.manager.l0.expire_at(key)
        if expire_at is not None:
            self.task_ttls.served(str(row.get("status", "")), expire_at - self.clock())

    def item_served(self, record: str, value: str | None, started_at: float, what: str = "item") -> int:
        """Judge an item or herd read: a value (``"<version>|..."``) against Mlt's versions, ``None`` (or a negative
        answer) against the record's existence; returns the verdict. A fresh value costs a dict lookup and a compare.
        """
        truth, stale = self.truth, self.stale
        stale.checked[what] += 1
        if value is not None and truth.latest.get(record) == value:
            return 0
        if value is None:
            stale.absent_answers[what] += 1
            version = 0
            verdict = truth.judge_absent(record, started_at)
        else:
            version = int(value[: value.index("|")])
            verdict = truth.judge(record, version, started_at)
        if verdict:
            stale.flag(what, verdict, record, version, truth.version(record), self.env.now)
        return verdict

    def mlt_item(self, kind: str, scope: str, item_id: str) -> Loader:
        store = self.store

        def load() -> Any:
            found = store.get_item(kind, scope, item_id)
            return None if found is MISSING else found

        return load
