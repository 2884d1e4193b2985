"""``MwManager``: one agent's working memory, with the API names the origin system's users call.

A facade over named parts, each of which knows nothing of it: :class:`mw.agent_tiers.AgentTiers`
(the agent's view of L0/L1/L2/Mlt and its counters), :class:`mw.readthrough.ReadThrough` (the
read-through protocol of :mod:`mw.protocol`, driven sync, async and split-phase), :mod:`mw.writes`
(writes, deletes, negative marks), :mod:`mw.batch`, :mod:`mw.prewarm`, :class:`mw.claims.Claims`,
and the task-row TTL policy and keys of :mod:`mw.tasks`. This class only checks arguments, builds
keys and wires calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mw import batch, drive, writes
from mw import keys as K
from mw import protocol as P
from mw.agent_tiers import AgentTiers
from mw.claims import Claims
from mw.clock import Clock
from mw.cluster import DEFAULT_NODE, Cluster
from mw.config import MwConfig
from mw.errors import MltUnavailable
from mw.prewarm import prewarm
from mw.readthrough import LoadPlan, ReadThrough
from mw.tasks import cache_ttl_s, row_task_id, strip_task_meta, task_keys
from mw.tiers import MISS
from mw.tiers.l0 import L0Cache
from mw.ttl import check_ttl

log = logging.getLogger("mw")

Loader = Callable[[], Any]


class MwManager:
    """The working memory of one agent ("organ"); the arguments are those of :class:`AgentTiers`."""

    def __init__(
        self,
        organ_id: str,
        config: MwConfig | None = None,
        *,
        node: str = DEFAULT_NODE,
        clock: Clock | None = None,
        l1: Any = None,
        cluster: Cluster | None = None,
    ) -> None:
        tiers = AgentTiers(organ_id, config, node=node, clock=clock, l1=l1, cluster=cluster)
        self.tiers = tiers
        """The agent's view of the tiers, which the protocol's steps read and fill (tests drive them with it)."""
        self._reads = ReadThrough(tiers)
        self._claims = Claims(tiers)
        self.organ_id = tiers.organ_id
        self.config = tiers.config
        self.cluster = tiers.cluster
        self.clock = tiers.clock
        self.node = tiers.node
        self.enabled = tiers.enabled
        self.telemetry = tiers.telemetry
        self._l0 = tiers.l0
        self._hot_add = tiers.hot_add

    # --- tiers, for tests and tools ------------------------------------------------------------------
    @property
    def l0(self) -> L0Cache:
        return self._l0

    @property
    def l1(self) -> Any:
        return self.node.l1

    @property
    def l2(self) -> Any:
        return self.cluster.l2

    @property
    def mlt(self) -> Any:
        return self.cluster.mlt

    # --- reads -------------------------------------------------------------------------------------
    def get_item_typed(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        """The typed global item, else this agent's typed item, else Mlt (or ``loader``); ``None`` if absent.

        A miss loads once cluster-wide, like :meth:`get_or_load`.
        """
        key = K.global_typed_key(kind, scope, item_id)
        if ttl_s is not None:
            ttl_s = check_ttl(ttl_s)
        self._hot_add(key)
        if self.enabled:
            value = self._l0.get(key, MISS)
            if value is not MISS:
                self.telemetry.l0_hits += 1
                return value
        tiers = self.tiers
        load = self._reads.item_loader(kind, scope, item_id, loader)
        return self._reads.get(key, load, ttl_s, fallback=lambda: tiers.organ_typed(kind, item_id)).value

    async def get_item_typed_async(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        key = K.global_typed_key(kind, scope, item_id)
        if ttl_s is not None:
            ttl_s = check_ttl(ttl_s)
        self._hot_add(key)
        tiers = self.tiers
        if self.enabled:
            value = tiers.l0_get(key)
            if value is not MISS:
                return value
        load = self._reads.item_loader_async(kind, scope, item_id, loader)
        outcome = await self._reads.get_async(key, load, ttl_s, fallback=lambda: tiers.organ_typed(kind, item_id))
        return outcome.value

    def _untyped_local(self, key: str, item_id: str, is_global: bool) -> Any:
        value = self.tiers.organ_untyped(item_id, is_global)
        return self.tiers.l0_get(key) if value is MISS else value

    def get_item(self, item_id: str, is_global: bool = False, loader: Loader | None = None) -> Any:
        """This agent's own item (``set_item``) first, then the global item through L0 -> L1 -> L2.

        ``is_global=True``: ``item_id`` is a full global key, used as given. With a ``loader``, a miss
        loads once cluster-wide and fills the tiers; without one a miss returns ``None``.
        """
        key = K.global_key(item_id, is_global=is_global)
        self._hot_add(key)
        if self.enabled:
            value = self._untyped_local(key, item_id, is_global)
            if value is not MISS:
                return value
        load = self._reads.user_loader(loader) if loader is not None else _no_load
        return self._reads.get(key, load, loads=loader is not None).value

    async def get_item_async(self, item_id: str, is_global: bool = False, loader: Loader | None = None) -> Any:
        key = K.global_key(item_id, is_global=is_global)
        self._hot_add(key)
        if self.enabled:
            value = self._untyped_local(key, item_id, is_global)
            if value is not MISS:
                return value
        load = self._reads.user_loader(loader) if loader is not None else _no_load
        return (await self._reads.get_async(key, load, loads=loader is not None)).value

    def get_or_load(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        """Read-through for any item kind, protected against stampedes (see :mod:`mw.protocol`).

        ``loader`` takes no arguments and returns the value, or ``None`` for "absent" (remembered in the
        negative cache for ``MW_TASK_TTL_NEGATIVE_S``). Without a loader, Mlt's item table is read. A
        call that gets no value within ``MW_LOAD_TIMEOUT_S`` raises :class:`mw.errors.LoadTimeout`.
        """
        key = K.global_typed_key(kind, scope, item_id)
        ttl = None if ttl_s is None else check_ttl(ttl_s)
        self._hot_add(key)
        return self._reads.get_with_l0(key, self._reads.item_loader(kind, scope, item_id, loader), ttl, None).value

    async def get_or_load_async(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        """As :meth:`get_or_load`; ``loader`` may be a coroutine function (it runs on the caller's loop)."""
        key = K.global_typed_key(kind, scope, item_id)
        ttl = None if ttl_s is None else check_ttl(ttl_s)
        self._hot_add(key)
        load = self._reads.item_loader_async(kind, scope, item_id, loader)
        return (await self._reads.get_with_l0_async(key, load, ttl, None)).value

    def get_many_typed(self, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
        """Several typed items; L2 is asked once (MGET) for everything L0/L1 did not have. No Mlt."""
        return batch.get_many(self.tiers, kind, scope, item_ids)

    async def get_many_typed_async(self, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
        """As :meth:`get_many_typed`, with one asyncio ``MGET``."""
        return await batch.get_many_async(self.tiers, kind, scope, item_ids)

    # --- split phase ---------------------------------------------------------------------------------
    def begin_load(self, kind: str, scope: str, item_id: str) -> LoadPlan:
        """Read-through in steps, for schedulers that cannot block (SimPy, gevent, a job queue).

        The same protocol as ``get_or_load``, never waiting: a ``wait`` plan is re-checked with
        :meth:`poll_load`, a ``lead`` plan is completed with :meth:`finish_load`. Deadlines are on the
        manager's clock.
        """
        key = K.global_typed_key(kind, scope, item_id)
        self._hot_add(key)
        if self.enabled:  # an L0 hit, as ReadThrough.begin answers it, without its two calls
            value = self._l0.get(key, MISS)
            if value is not MISS:
                self.telemetry.l0_hits += 1
                return LoadPlan("hit", key, value)
        return self._reads.begin_missed(key)

    def begin_get_or_load(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> LoadPlan:
        """:meth:`get_or_load` in steps (see :meth:`begin_load`), with its XFetch early refresh and ``ttl_s``.

        An L0 hit XFetch wants refreshed comes back as a ``lead`` plan, finished as a miss is (and then a ``hit``
        with the loaded value); ``finish_load`` without a TTL fills with ``ttl_s``.
        """
        key = K.global_typed_key(kind, scope, item_id)
        ttl = None if ttl_s is None else check_ttl(ttl_s)
        self._hot_add(key)
        return self._reads.begin_with_l0(key, ttl)

    def poll_load(self, plan: LoadPlan) -> LoadPlan:
        """Re-check a ``wait`` plan: ``hit``/``negative`` once the holder filled, ``lead`` if it may load now."""
        return self._reads.poll(plan)

    def finish_load(self, plan: LoadPlan, value: Any, ttl_s: float | None = None, delta: float = 0.0) -> bool:
        """Complete a ``lead`` plan with the loaded value (``None``: absent). True if the tiers took it."""
        return self._reads.finish(plan, value, None if ttl_s is None else check_ttl(ttl_s), delta)

    def fail_load(self, plan: LoadPlan, error: Exception) -> None:
        """End a ``lead`` plan whose load raised ``error`` (Mlt did not answer): its lease is released, the
        callers of this process waiting on it get ``error``, and nothing is cached. A failed load is never
        taken for absence: the negative cache only records a load that answered ``None``."""
        self._reads.fail(plan, error)

    # --- writes ----------------------------------------------------------------------------------------
    def set_global_item_typed(
        self, kind: str, scope: str, item_id: str, value: Any, ttl_s: float | None = None
    ) -> None:
        """The sanctioned global write: ``global:item:{kind}:{scope}:{id}`` in L0, L1 and L2."""
        key = K.global_typed_key(kind, scope, item_id)
        if self.enabled:
            writes.write(self.tiers, key, value, ttl_s)

    async def set_global_item_typed_async(
        self, kind: str, scope: str, item_id: str, value: Any, ttl_s: float | None = None
    ) -> None:
        """As :meth:`set_global_item_typed`, the L2 command on the caller's event loop."""
        key = K.global_typed_key(kind, scope, item_id)
        if self.enabled:
            await writes.write_async(self.tiers, key, value, ttl_s)

    def set_global_item(self, item_id: str, value: Any, ttl_s: float | None = None) -> None:
        """Write-through under ``global:item:{item_id}`` (an already-prefixed id is not prefixed again)."""
        key = K.global_key(item_id)
        if self.enabled:
            writes.write(self.tiers, key, value, ttl_s)

    async def set_global_item_async(self, item_id: str, value: Any, ttl_s: float | None = None) -> None:
        key = K.global_key(item_id)
        if self.enabled:
            await writes.write_async(self.tiers, key, value, ttl_s)

    def set_item(self, item_id: str, value: Any, /, **kwargs: Any) -> None:
        """L0 only, no TTL: an agent's private scratch value, bounded by the L0 size limits."""
        if kwargs:
            raise TypeError(
                f"set_item() is L0-only and takes no {', '.join(sorted(kwargs))}; "
                "use set_global_item_typed(..., ttl_s=...) for a value with a TTL"
            )
        if self.enabled:
            self._l0.set(K.organ_key(self.organ_id, item_id), value)

    def set_organ_item_typed(self, kind: str, item_id: str, value: Any) -> None:
        """``organ:{organ_id}:item:{kind}:{id}``, L0 only."""
        if self.enabled:
            self._l0.set(K.organ_typed_key(self.organ_id, kind, item_id), value)

    async def set_item_async(self, item_id: str, value: Any, /, **kwargs: Any) -> None:
        """As :meth:`set_item` (L0 only: no I/O, so nothing to wait for)."""
        self.set_item(item_id, value, **kwargs)

    async def set_organ_item_typed_async(self, kind: str, item_id: str, value: Any) -> None:
        self.set_organ_item_typed(kind, item_id, value)

    # --- deletes ---------------------------------------------------------------------------------------
    def del_global_key(self, key: str) -> bool:
        """Delete a global item from every tier and every agent's L0 in this process."""
        return writes.delete_everywhere(self.tiers, [K.global_key(key)]) if self.enabled else False

    del_global_key_sync = del_global_key

    async def del_global_key_async(self, key: str) -> bool:
        return await writes.delete_everywhere_async(self.tiers, [K.global_key(key)]) if self.enabled else False

    def del_global_item_typed(self, kind: str, scope: str, item_id: str) -> bool:
        key = K.global_typed_key(kind, scope, item_id)
        return writes.delete_everywhere(self.tiers, [key]) if self.enabled else False

    async def del_global_item_typed_async(self, kind: str, scope: str, item_id: str) -> bool:
        key = K.global_typed_key(kind, scope, item_id)
        return await writes.delete_everywhere_async(self.tiers, [key]) if self.enabled else False

    def delete_organ_item(self, item_id: str) -> bool:
        return self._l0.pop(K.organ_key(self.organ_id, item_id)) is not None

    def delete_organ_item_typed(self, kind: str, item_id: str) -> bool:
        return self._l0.pop(K.organ_typed_key(self.organ_id, kind, item_id)) is not None

    async def delete_organ_item_async(self, item_id: str) -> bool:
        return self.delete_organ_item(item_id)

    async def delete_organ_item_typed_async(self, kind: str, item_id: str) -> bool:
        return self.delete_organ_item_typed(kind, item_id)

    def clear(self) -> int:
        """Empty this agent's L0."""
        n = self._l0.clear()
        log.info("Cleared L0 cache for organ %s (%d items)", self.organ_id, n)
        return n

    async def clear_async(self) -> int:
        return self.clear()

    # --- negative cache ------------------------------------------------------------------------------
    def set_negative_cache(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> None:
        """Mark an item known absent for ``ttl_s`` (default ``MW_TASK_TTL_NEGATIVE_S``).

        Call it only after the store confirmed the absence; any write of the item clears the mark.
        """
        if self.enabled:
            writes.set_negative(self.tiers, K.global_typed_key(kind, scope, item_id), ttl_s)

    async def set_negative_cache_async(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> None:
        key = K.global_typed_key(kind, scope, item_id)
        if self.enabled:
            await writes.set_negative_async(self.tiers, key, ttl_s)

    def check_negative_cache(self, kind: str, scope: str, item_id: str) -> bool:
        """Whether the item is marked known absent (counts a negative-cache hit when it is)."""
        if not self.enabled:
            return False
        read = P.Read(K.global_typed_key(kind, scope, item_id))
        return drive.run_sync(self.tiers, P.negative_hit(self.tiers, read.key), read, _no_load)

    async def check_negative_cache_async(self, kind: str, scope: str, item_id: str) -> bool:
        if not self.enabled:
            return False
        read = P.Read(K.global_typed_key(kind, scope, item_id))
        return await drive.run_async(self.tiers, P.negative_hit(self.tiers, read.key), read, _no_load)

    # --- in-flight claims ----------------------------------------------------------------------------
    def try_set_inflight(self, key: str, ttl_s: float) -> bool:
        """Atomically claim ``key`` for ``ttl_s``: ``True`` only for the one caller that got it.

        A thin wrapper over the cluster lease (:mod:`mw.lease`) that ``get_or_load`` uses; release it
        early with :meth:`release_inflight`, or let it expire (expired claims leave this manager's map).
        """
        return self._claims.claim(key, ttl_s)

    def release_inflight(self, key: str) -> bool:
        """Release a claim this manager holds (never someone else's)."""
        return self._claims.release(key)

    async def try_set_inflight_async(self, key: str, ttl_s: float) -> bool:
        return await self._claims.claim_async(key, ttl_s)

    async def release_inflight_async(self, key: str) -> bool:
        return await self._claims.release_async(key)

    # --- task rows -----------------------------------------------------------------------------------
    def _task_ttl(self, row: Mapping[str, Any]) -> float:
        return cache_ttl_s(row, self.config, self.clock(), self.cluster.rng.random)

    def _task_fill_ttl(self, row: Any) -> float:
        """TTL of a row loaded by ``get_task``, logged as the checklist's troubleshooting greps for it."""
        ttl = self._task_ttl(row)
        log.info("Cached task %s with TTL %ss", row.get("id"), f"{ttl:g}")
        return ttl

    def cache_task_row(self, row: Mapping[str, Any]) -> float:
        """Cache a task row under ``global:item:task:by_id:{id}`` with its status TTL; return the TTL used."""
        task_id, ttl = row_task_id(row), self._task_ttl(row)
        if not self.enabled:
            return 0.0
        # A TTL of 0 writes nothing: ``write`` then deletes every cached copy of the row.
        writes.write(self.tiers, K.task_key(task_id), dict(row), ttl)
        return self._task_cached(task_id, row, ttl)

    async def cache_task_row_async(self, row: Mapping[str, Any]) -> float:
        """As :meth:`cache_task_row`, the L2 command on the caller's event loop."""
        task_id, ttl = row_task_id(row), self._task_ttl(row)
        if not self.enabled:
            return 0.0
        await writes.write_async(self.tiers, K.task_key(task_id), dict(row), ttl)
        return self._task_cached(task_id, row, ttl)

    def _task_cached(self, task_id: str, row: Mapping[str, Any], ttl: float) -> float:
        if ttl == 0:
            log.info("Task %s in status %r is not cached (TTL 0)", task_id, row.get("status"))
        else:
            log.info("Cached task %s with TTL %ss", task_id, f"{ttl:g}")
        return ttl

    cache_task = cache_task_row
    cache_task_async = cache_task_row_async

    def get_task(self, task_id: object, *, with_meta: bool = False) -> dict[str, Any] | None:
        """The task row: cache first, else Mlt's task table (one load cluster-wide); ``None`` if absent.

        The row is what its writer wrote, field for field; ``with_meta=True`` adds the store's metadata
        (:data:`mw.tasks.TASK_META_FIELDS`: ``version``) when the cached row carries it.
        """
        key = K.task_key(task_id)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        def load() -> Any:
            telemetry.mlt_loads += 1
            return mlt.get_task(task_id, with_meta=True)

        self._hot_add(key)
        outcome = self._reads.get_with_l0(key, load, None, self._task_fill_ttl)
        self._count_task(outcome.hit)
        return _task_row(outcome.value, with_meta)

    def begin_task(self, task_id: object) -> LoadPlan:
        """``get_task`` in steps (see :meth:`begin_load`): counted as ``get_task`` counts it, and a row
        given to :meth:`finish_load` without a TTL gets its status TTL, as a row ``get_task`` loads.

        A plan's value is the cached row with its metadata (``get_task(id, with_meta=True)``): a
        split-phase caller loads with ``mlt.get_task(id, with_meta=True)`` and reads versions off it."""
        key = K.task_key(task_id)
        self._hot_add(key)
        if self.enabled:  # an L0 hit, as in begin_load
            value = self._l0.get(key, MISS)
            if value is not MISS:
                self.telemetry.l0_hits += 1
                self.telemetry.task_cache_hits += 1
                return LoadPlan("hit", key, value)
        plan = self._reads.begin_missed(key, self._task_fill_ttl)
        self._count_task(plan.state in ("hit", "negative") and not plan.shared)
        return plan

    async def get_task_async(self, task_id: object, *, with_meta: bool = False) -> dict[str, Any] | None:
        key = K.task_key(task_id)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        async def load() -> Any:
            telemetry.mlt_loads += 1
            return await mlt.get_task_async(task_id, with_meta=True)

        self._hot_add(key)
        outcome = await self._reads.get_with_l0_async(key, load, None, self._task_fill_ttl)
        self._count_task(outcome.hit)
        return _task_row(outcome.value, with_meta)

    def _count_task(self, hit: bool) -> None:
        if hit:
            self.telemetry.task_cache_hits += 1
        else:
            self.telemetry.task_cache_misses += 1

    def _evicted(self, task_id: object) -> None:
        self.telemetry.task_evictions += 1
        log.info("Invalidated task %s in every tier (task_evictions=%d)", task_id, self.telemetry.task_evictions)

    def invalidate_task(self, task_id: object) -> None:
        """Drop a task row and its negative entry from every tier of every agent; counts a task eviction."""
        if self.enabled:
            writes.delete_everywhere(self.tiers, task_keys(task_id))
        self._evicted(task_id)

    async def invalidate_task_async(self, task_id: object) -> None:
        if self.enabled:
            await writes.delete_everywhere_async(self.tiers, task_keys(task_id))
        self._evicted(task_id)

    invalidate_task_cache = invalidate_task

    def update_task_status(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        """Change the status in Mlt, then invalidate the cached row everywhere. Returns the new row.

        A write that failed with :class:`MltUnavailable` is in doubt (a statement that timed out may still commit
        when the database answers again): the cached row is invalidated anyway, then the error propagates.
        """
        try:
            row = self.cluster.mlt.update_task_status(task_id, status, **fields)
        except MltUnavailable:
            self.invalidate_task(task_id)
            raise
        self.invalidate_task(task_id)
        return row

    async def update_task_status_async(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        try:
            row = await asyncio.to_thread(self.cluster.mlt.update_task_status, task_id, status, **fields)
        except MltUnavailable:
            await self.invalidate_task_async(task_id)
            raise
        await self.invalidate_task_async(task_id)
        return row

    # --- prewarming ----------------------------------------------------------------------------------
    def prewarm(self, top_n: int = 10, near_expiry: float = 0.2) -> int:
        """Warm the hottest items whose node copy is missing or within ``near_expiry`` of its L1 TTL.

        One ``MGET`` asks L2 for all of them: a copy there refills this node's L1 without touching Mlt.
        Only items L2 lacks (or holds for less than the margin) are loaded from Mlt (task rows from the
        task table) under the lease, at most ``MW_PREWARM_MAX_PER_CALL`` per call. Returns how many were
        warmed (also counted in telemetry as ``prewarmed``).
        """
        return prewarm(self.tiers, self._reads, self._task_ttl, top_n, near_expiry)

    # --- telemetry -------------------------------------------------------------------------------------
    def get_hot_items(self, top_n: int = 10) -> list[list[Any]]:
        return self.tiers.hot_items(top_n)

    async def get_hot_items_async(self, top_n: int = 10) -> list[list[Any]]:
        return self.get_hot_items(top_n)

    def get_telemetry(self) -> dict[str, Any]:
        return self.tiers.report()

    def reset_telemetry(self) -> None:
        self.telemetry.reset()

    def memory_metrics(self, top_n: int = 10) -> dict[str, Any]:
        """The heartbeat's ``memory_metrics``: every ``mw_*`` field of the checklist."""
        return self.tiers.heartbeat(top_n)

    def close(self) -> None:
        """Drop this agent's L0 and fold its counters into the process totals (once)."""
        self.tiers.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.organ_id!r}, node={self.node.name!r}, enabled={self.enabled})"


def _no_load() -> Any:
    return None


def _task_row(value: Any, with_meta: bool) -> dict[str, Any] | None:
    """What ``get_task`` answers: the cached row as written, or with its metadata (never the cached object itself)."""
    if not isinstance(value, Mapping):  # None, or a foreign value someone wrote under a task key: as it is
        return value  # type: ignore[no-any-return]
    return dict(value) if with_meta else strip_task_meta(value)
