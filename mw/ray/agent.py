"""Agents that are Ray actors: each owns an ``MwManager`` whose L1 is its node's cache actor.

    import ray
    from mw.ray import MwAgent, agent_options, env_vars

    Agent = ray.remote(MwAgent)          # or subclass MwAgent and decorate the subclass
    a = Agent.options(**agent_options(env_vars(config))).remote("planner-1")
    ray.get(a.cache_task_row.remote(row)); ray.get(a.heartbeat.remote())["memory_metrics"]

Configuration reaches the actor through its environment (``runtime_env={"env_vars": {...}}``) and is read
by :meth:`MwConfig.from_env` in the actor, as the checklist's ``MW_TASK_TTL_*_S`` / ``MW_L1_TTL_S``
variables expect; :meth:`MwAgent.reload_config` reads it again without losing the agent's counters.

The origin system's agents called ``cache_task_row``, ``invalidate_task_cache`` and ``get_task_cached`` and
reported ``memory_metrics`` in their heartbeats; those names are kept. Counters in the heartbeat are
cumulative over the agent's life (a manager replaced by ``reload_config`` is folded in, hit ratios are
computed from the summed counts, never averaged), so a fleet dashboard can difference them.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import ray

from mw import keys as K
from mw.clock import Clock
from mw.config import MwConfig
from mw.manager import MwManager
from mw.ray.env import ray_l1_mode
from mw.ray.node_cache import RayNodeL1, current_node_id
from mw.telemetry import COUNTERS, memory_metrics

log = logging.getLogger("mw.ray")

NODE_TIER_FIELDS = (
    "mw_l1_node_reads",
    "mw_l1_node_hits",
    "mw_l1_node_errors",
    "mw_l1_node_timeouts",
    "mw_l1_node_skipped",
    "mw_l1_node_write_failures",
    "mw_l1_node_pending",
    "mw_l1_node_reacquired",
)
"""Heartbeat fields of the node tier, added to the checklist's ``mw_*`` fields (their errors also count
in ``mw_tier_errors``)."""


def agent_options(env: Mapping[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """``.options(...)`` for an agent actor: its ``MW_*`` environment in ``runtime_env`` plus ``options``."""
    runtime_env = dict(options.pop("runtime_env", None) or {})
    if env:
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
    if runtime_env:
        options["runtime_env"] = runtime_env
    return options


class MwAgent:
    """Base class (or plain class, under ``ray.remote``) for an agent actor with working memory.

    ``config`` defaults to ``MwConfig.from_env()`` read in the actor. ``node_l1``: ``"actor"`` (default,
    or ``MW_RAY_L1``) shares the node's cache actor; ``"process"`` keeps an in-process L1.
    """

    def __init__(
        self,
        organ_id: str,
        *,
        config: MwConfig | None = None,
        clock: Clock | None = None,
        node_l1: str | None = None,
    ) -> None:
        self.organ_id = organ_id
        self._clock = clock
        self._node_l1 = ray_l1_mode() if node_l1 is None else node_l1
        self._retired: dict[str, int] = dict.fromkeys((*COUNTERS, "hits"), 0)
        self._retired_hot: Counter[str] = Counter()
        self.started_at = time.time()
        self.heartbeats = 0
        self.mw = self._manager(MwConfig.from_env() if config is None else config)

    def _manager(self, config: MwConfig) -> MwManager:
        on_ray = ray.is_initialized()
        self.node_id = current_node_id() if on_ray else "local"
        l1: RayNodeL1 | None = None
        if on_ray and self._node_l1 == "actor":
            l1 = RayNodeL1.for_config(config, clock=self._clock, node_id=self.node_id)
            if not l1.wait_ready():
                log.warning(
                    "Node cache %s did not answer at start-up; agent %s reads L2 meanwhile", l1.name, self.organ_id
                )
        return MwManager(self.organ_id, config, node=f"ray-{self.node_id[:16]}", clock=self._clock, l1=l1)

    @property
    def node_tier(self) -> RayNodeL1 | None:
        """The node cache client this agent's manager uses (``None`` with an in-process L1)."""
        l1 = self.mw.l1
        return l1 if isinstance(l1, RayNodeL1) else None

    # --- configuration -----------------------------------------------------------------------------------
    def reload_config(self, env: Mapping[str, str] | None = None) -> bool:
        """Read ``MW_*`` again (from ``env`` if given); a changed config gets a new manager, counters kept."""
        config = MwConfig.from_env(os.environ if env is None else env)
        if config == self.mw.config:
            return False
        old = self.mw
        for name, value in old.telemetry.counters().items():
            self._retired[name] = self._retired.get(name, 0) + value
        self._retired["l0_evictions"] += old.l0.evictions
        if config.hot_items_half_life_s:
            self._retired_hot.clear()  # frozen counts could never decay: a forgetting ranking starts afresh
        else:
            self._retired_hot.update(dict(old.telemetry.hot.top(old.telemetry.hot.capacity)))
        old.close()
        self.mw = self._manager(config)
        log.info("Agent %s reloaded its configuration", self.organ_id)
        return True

    def config(self) -> dict[str, Any]:
        """The settings the agent runs with (what the TTL variables turned into)."""
        c = self.mw.config
        return {
            "enabled": c.enabled,
            "namespace": c.namespace,
            "l1_ttl_s": c.l1_ttl_s,
            "l2_ttl_s": c.l2_ttl_s,
            "task_ttls_s": dict(c.task_ttls_s),
            "node_l1": self._node_l1 if self.node_tier is not None else "process",
        }

    # --- task helpers (the origin system's names) --------------------------------------------------------
    def cache_task_row(self, row: Mapping[str, Any]) -> float:
        """Cache a task row with its status TTL in every tier; returns the TTL used (0: not cached)."""
        return self.mw.cache_task_row(row)

    def get_task_cached(self, task_id: object) -> dict[str, Any] | None:
        """The task row from the cache, else from Mlt (one load cluster-wide); ``None`` when absent."""
        return self.mw.get_task(task_id)

    def invalidate_task_cache(self, task_id: object) -> None:
        """Drop the task row from every tier of every agent (other processes through the bus)."""
        self.mw.invalidate_task(task_id)

    def update_task_status(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        """Write the new status to Mlt, invalidate the row everywhere, then call :meth:`on_task_status_change`."""
        row = self.mw.update_task_status(task_id, status, **fields)
        self.on_task_status_change(task_id, status, row)
        return row

    def task_started(self, task_id: object, **fields: Any) -> dict[str, Any] | None:
        return self.update_task_status(task_id, "running", **fields)

    def task_completed(self, task_id: object, **fields: Any) -> dict[str, Any] | None:
        return self.update_task_status(task_id, "completed", **fields)

    def task_failed(self, task_id: object, error: str | None = None, **fields: Any) -> dict[str, Any] | None:
        if error is not None:
            fields["error"] = error
        return self.update_task_status(task_id, "failed", **fields)

    def task_cancelled(self, task_id: object, **fields: Any) -> dict[str, Any] | None:
        return self.update_task_status(task_id, "cancelled", **fields)

    def task_status_changed(self, task_id: object, old_status: str | None, new_status: str | None) -> bool:
        """For rows the application writes to Mlt itself: invalidate when the status changed."""
        if (old_status or "").lower() == (new_status or "").lower():
            return False
        self.mw.invalidate_task(task_id)
        self.on_task_status_change(task_id, new_status, None)
        return True

    def on_task_status_change(self, task_id: object, status: str | None, row: dict[str, Any] | None) -> None:
        """Hook for subclasses, called after the cached row was invalidated everywhere."""

    # --- items -------------------------------------------------------------------------------------------
    def get_item(self, item_id: str, is_global: bool = False) -> Any:
        return self.mw.get_item(item_id, is_global=is_global)

    def get_item_typed(self, kind: str, scope: str, item_id: str) -> Any:
        return self.mw.get_item_typed(kind, scope, item_id)

    def get_or_load(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> Any:
        """Read-through from Mlt's item table (stampede-protected across the cluster)."""
        return self.mw.get_or_load(kind, scope, item_id, ttl_s=ttl_s)

    def set_global_item(self, item_id: str, value: Any, ttl_s: float | None = None) -> str:
        """Write-through; returns the key written (an already-prefixed id is not prefixed again)."""
        self.mw.set_global_item(item_id, value, ttl_s)
        return K.global_key(item_id)

    def set_global_item_typed(self, kind: str, scope: str, item_id: str, value: Any, ttl_s: float | None = None) -> str:
        self.mw.set_global_item_typed(kind, scope, item_id, value, ttl_s)
        return K.global_typed_key(kind, scope, item_id)

    def del_global_key(self, key: str) -> bool:
        return self.mw.del_global_key(key)

    def set_negative_cache(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> None:
        self.mw.set_negative_cache(kind, scope, item_id, ttl_s)

    def check_negative_cache(self, kind: str, scope: str, item_id: str) -> bool:
        return self.mw.check_negative_cache(kind, scope, item_id)

    def prewarm(self, top_n: int = 10) -> int:
        return self.mw.prewarm(top_n)

    def clear_l0(self) -> int:
        return self.mw.clear()

    # --- telemetry ---------------------------------------------------------------------------------------
    def memory_metrics(self, top_n: int = 10) -> dict[str, Any]:
        """Every ``mw_*`` field of the checklist, cumulative over the agent's life, plus the node tier's."""
        m = self.mw
        counters = m.telemetry.counters()
        counters["l0_evictions"] = m.l0.evictions
        for name, value in self._retired.items():
            counters[name] = counters.get(name, 0) + value
        hot: Counter[str] = Counter(self._retired_hot)
        hot.update(dict(m.telemetry.hot.top(top_n * 2)))
        out = memory_metrics(
            counters,
            hot.most_common(top_n * 2),
            enabled=m.enabled,
            l0_items=len(m.l0),
            l0_bytes=m.l0.nbytes,
            l0_max_items=m.config.l0_max_items,
            l0_max_bytes=m.config.l0_max_bytes,
            top_n=top_n,
        )
        tier = self.node_tier
        stats = tier.stats() if tier is not None else {}
        errors = stats.get("read_errors", 0) + stats.get("write_failures", 0)
        out.update(
            mw_l1_node="actor" if tier is not None else "process",
            mw_l1_node_reads=stats.get("reads", 0),
            mw_l1_node_hits=stats.get("hits", 0),
            mw_l1_node_errors=errors,
            mw_l1_node_timeouts=stats.get("timeouts", 0),
            mw_l1_node_skipped=stats.get("skipped_reads", 0) + stats.get("skipped_writes", 0),
            mw_l1_node_write_failures=stats.get("write_failures", 0),
            mw_l1_node_pending=stats.get("pending", 0),
            mw_l1_node_reacquired=stats.get("reacquired", 0),
        )
        out["mw_tier_errors"] += errors
        return out

    def heartbeat(self, top_n: int = 10) -> dict[str, Any]:
        """The agent's heartbeat: who, where, since when, and ``memory_metrics``."""
        self.heartbeats += 1
        return {
            "organ_id": self.organ_id,
            "node_id": self.node_id,
            "ts": time.time(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "heartbeats": self.heartbeats,
            "memory_metrics": self.memory_metrics(top_n),
        }

    def get_telemetry(self) -> dict[str, Any]:
        return self.mw.get_telemetry()

    def get_hot_items(self, top_n: int = 10) -> list[list[Any]]:
        return self.mw.get_hot_items(top_n)

    def mw_status(self) -> dict[str, Any]:
        """Plumbing for operators and tests: the bus (messages received, flushes) and the node tier."""
        bus = self.mw.cluster.bus
        tier = self.node_tier
        return {
            "organ_id": self.organ_id,
            "node": self.mw.node.name,
            "node_cache": None if tier is None else tier.name,
            "bus_received": 0 if bus is None else bus.received,
            "bus_flushes": 0 if bus is None else bus.flushes,
            "node_tier": None if tier is None else tier.stats(),
        }

    def node_cache_info(self) -> dict[str, Any] | None:
        """The node actor's own view (incarnation, items, op counts); ``None`` if unreachable or not used."""
        tier = self.node_tier
        return None if tier is None else tier.info()

    def flush_node_tier(self, timeout_s: float = 5.0) -> int:
        """Wait for this agent's unanswered node-cache writes; returns how many failed."""
        tier = self.node_tier
        return 0 if tier is None else tier.flush(timeout_s)

    def close(self) -> None:
        """Fold this agent's counters into the process totals and drop its L0."""
        tier = self.node_tier
        if tier is not None:
            tier.flush(1.0)
        self.mw.close()


class AsyncMwAgent(MwAgent):
    """An asyncio actor: the reads, invalidations and status updates below await instead of blocking.

    Ray runs an actor with ``async def`` methods on an event loop; node-cache reads then await their
    ``ObjectRef`` and Redis calls use the asyncio client. The sync methods inherited from :class:`MwAgent`
    (writes, telemetry) stay short and do not wait for the node actor.
    """

    async def get_task_cached(self, task_id: object) -> dict[str, Any] | None:  # type: ignore[override]
        return await self.mw.get_task_async(task_id)

    async def invalidate_task_cache(self, task_id: object) -> None:  # type: ignore[override]
        await self.mw.invalidate_task_async(task_id)

    async def update_task_status(  # type: ignore[override]
        self, task_id: object, status: str, **fields: Any
    ) -> dict[str, Any] | None:
        row = await self.mw.update_task_status_async(task_id, status, **fields)
        self.on_task_status_change(task_id, status, row)
        return row

    async def task_started(self, task_id: object, **fields: Any) -> dict[str, Any] | None:  # type: ignore[override]
        return await self.update_task_status(task_id, "running", **fields)

    async def task_completed(self, task_id: object, **fields: Any) -> dict[str, Any] | None:  # type: ignore[override]
        return await self.update_task_status(task_id, "completed", **fields)

    async def task_failed(  # type: ignore[override]
        self, task_id: object, error: str | None = None, **fields: Any
    ) -> dict[str, Any] | None:
        if error is not None:
            fields["error"] = error
        return await self.update_task_status(task_id, "failed", **fields)

    async def task_cancelled(self, task_id: object, **fields: Any) -> dict[str, Any] | None:  # type: ignore[override]
        return await self.update_task_status(task_id, "cancelled", **fields)

    async def get_item(self, item_id: str, is_global: bool = False) -> Any:
        return await self.mw.get_item_async(item_id, is_global=is_global)

    async def get_item_typed(self, kind: str, scope: str, item_id: str) -> Any:
        return await self.mw.get_item_typed_async(kind, scope, item_id)

    async def get_or_load(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> Any:
        return await self.mw.get_or_load_async(kind, scope, item_id, ttl_s=ttl_s)

    async def del_global_key(self, key: str) -> bool:  # type: ignore[override]
        return await self.mw.del_global_key_async(key)
