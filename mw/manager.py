"""``MwManager``: one agent's view of the tiers, with the API names the origin system's users call.

A facade: :class:`mw.core.ManagerCore` holds the agent's tiers, writes, deletes and telemetry; a
:class:`mw.readthrough.ReadThrough` runs the read-through protocol (:mod:`mw.protocol`) over them;
task rows use the TTL policy and keys of :mod:`mw.tasks`. This class only wires calls to them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from mw import drive
from mw import keys as K
from mw import protocol as P
from mw.codec import peek_expire_at
from mw.core import Loader, ManagerCore, ttl_ms
from mw.errors import CodecError, TierUnavailable
from mw.readthrough import LoadPlan, ReadThrough
from mw.tasks import cache_ttl_s, row_task_id, task_keys
from mw.tiers import MISS
from mw.ttl import check_ttl

log = logging.getLogger("mw")

_INFLIGHT_SWEEP = 1024
"""Claims held at once before expired ones are swept from the manager's map."""


class MwManager(ManagerCore):
    """The working memory of one agent ("organ"); see :class:`mw.core.ManagerCore` for the arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reads = ReadThrough(self)
        self._claims: dict[str, tuple[bytes, float]] = {}

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
        load = self._reads.item_loader(kind, scope, item_id, loader)
        return self._reads.get(key, load, ttl_s, fallback=lambda: self._organ_typed(kind, item_id)).value

    async def get_item_typed_async(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        key = K.global_typed_key(kind, scope, item_id)
        if ttl_s is not None:
            ttl_s = check_ttl(ttl_s)
        self._hot_add(key)
        if self.enabled:
            value = self._l0.get(key, MISS)
            if value is not MISS:
                self.telemetry.l0_hits += 1
                return value
        load = self._reads.item_loader_async(kind, scope, item_id, loader)
        outcome = await self._reads.get_async(key, load, ttl_s, fallback=lambda: self._organ_typed(kind, item_id))
        return outcome.value

    def _untyped_local(self, key: str, item_id: str, is_global: bool) -> Any:
        value = self._organ_untyped(item_id, is_global)
        if value is MISS:
            value = self._l0.get(key, MISS)
            if value is not MISS:
                self.telemetry.l0_hits += 1
        return value

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

    # --- split phase ---------------------------------------------------------------------------------
    def begin_load(self, kind: str, scope: str, item_id: str) -> LoadPlan:
        """Read-through in steps, for schedulers that cannot block (SimPy, gevent, a job queue).

        The same protocol as ``get_or_load``, never waiting: a ``wait`` plan is re-checked with
        :meth:`poll_load`, a ``lead`` plan is completed with :meth:`finish_load`. Deadlines are on the
        manager's clock.
        """
        key = K.global_typed_key(kind, scope, item_id)
        self._hot_add(key)
        return self._reads.begin(key)

    def poll_load(self, plan: LoadPlan) -> LoadPlan:
        """Re-check a ``wait`` plan: ``hit``/``negative`` once the holder filled, ``lead`` if it may load now."""
        return self._reads.poll(plan)

    def finish_load(self, plan: LoadPlan, value: Any, ttl_s: float | None = None, delta: float = 0.0) -> bool:
        """Complete a ``lead`` plan with the loaded value (``None``: absent). True if the tiers took it."""
        return self._reads.finish(plan, value, None if ttl_s is None else check_ttl(ttl_s), delta)

    # --- negative cache ------------------------------------------------------------------------------
    def check_negative_cache(self, kind: str, scope: str, item_id: str) -> bool:
        """Whether the item is marked known absent (counts a negative-cache hit when it is)."""
        if not self.enabled:
            return False
        read = P.Read(K.global_typed_key(kind, scope, item_id))
        return drive.run_sync(self, P.negative_hit(self, read.key), read, _no_load)

    async def check_negative_cache_async(self, kind: str, scope: str, item_id: str) -> bool:
        if not self.enabled:
            return False
        read = P.Read(K.global_typed_key(kind, scope, item_id))
        return await drive.run_async(self, P.negative_hit(self, read.key), read, _no_load)

    # --- in-flight claims ----------------------------------------------------------------------------
    def try_set_inflight(self, key: str, ttl_s: float) -> bool:
        """Atomically claim ``key`` for ``ttl_s``: ``True`` only for the one caller that got it.

        A thin wrapper over the cluster lease (:mod:`mw.lease`) that ``get_or_load`` uses; release it
        early with :meth:`release_inflight`, or let it expire (expired claims leave this manager's map).
        """
        ttl = check_ttl(ttl_s)
        lkey = K.lease_key(K.check_full_key(key))
        if len(self._claims) >= _INFLIGHT_SWEEP:
            now = time.monotonic()
            self._claims = {k: c for k, c in self._claims.items() if c[1] > now}
        try:
            token = self.cluster.leases.acquire(lkey, ttl_ms(ttl))
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return False
        if token is not None:
            self._claims[key] = (token, time.monotonic() + ttl)
        return token is not None

    def release_inflight(self, key: str) -> bool:
        """Release a claim this manager holds (never someone else's)."""
        claim = self._claims.pop(key, None)
        if claim is None:
            return False
        try:
            return self.cluster.leases.release(K.lease_key(key), claim[0])
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return False

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
        task_id = row_task_id(row)
        ttl = self._task_ttl(row)
        if not self.enabled:
            return 0.0
        key = K.task_key(task_id)
        if ttl == 0:
            self._delete_everywhere([key])
            log.info("Task %s in status %r is not cached (TTL 0)", task_id, row.get("status"))
            return 0.0
        self._write(key, dict(row), ttl)
        log.info("Cached task %s with TTL %ss", task_id, f"{ttl:g}")
        return ttl

    cache_task = cache_task_row

    def get_task(self, task_id: object) -> dict[str, Any] | None:
        """The task row: cache first, else Mlt's task table (one load cluster-wide); ``None`` if absent."""
        key = K.task_key(task_id)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        def load() -> Any:
            telemetry.mlt_loads += 1
            return mlt.get_task(task_id)

        self._hot_add(key)
        outcome = self._reads.get_with_l0(key, load, None, self._task_fill_ttl)
        self._count_task(outcome.hit)
        return outcome.value  # type: ignore[no-any-return]

    async def get_task_async(self, task_id: object) -> dict[str, Any] | None:
        key = K.task_key(task_id)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        async def load() -> Any:
            telemetry.mlt_loads += 1
            return await mlt.get_task_async(task_id)

        self._hot_add(key)
        outcome = await self._reads.get_with_l0_async(key, load, None, self._task_fill_ttl)
        self._count_task(outcome.hit)
        return outcome.value  # type: ignore[no-any-return]

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
            self._delete_everywhere(task_keys(task_id))
        self._evicted(task_id)

    async def invalidate_task_async(self, task_id: object) -> None:
        if self.enabled:
            await self._delete_everywhere_async(task_keys(task_id))
        self._evicted(task_id)

    invalidate_task_cache = invalidate_task

    def update_task_status(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        """Change the status in Mlt, then invalidate the cached row everywhere. Returns the new row."""
        row = self.cluster.mlt.update_task_status(task_id, status, **fields)
        self.invalidate_task(task_id)
        return row

    async def update_task_status_async(self, task_id: object, status: str, **fields: Any) -> dict[str, Any] | None:
        row = await asyncio.to_thread(self.cluster.mlt.update_task_status, task_id, status, **fields)
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
        if not self.enabled:
            return 0
        now = self.clock()
        margin = near_expiry * self.config.l1_ttl_s
        wanted = []
        for key, _count in self.telemetry.hot.top(top_n):
            parts = K.parse_typed(key)
            expire_at = self.node.l1.expire_at(key)
            if parts is not None and (expire_at is None or expire_at - now <= margin):
                wanted.append((key, parts))
        if not wanted:
            return 0
        try:
            found = self.cluster.l2.mget([key for key, _ in wanted])
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            found = [None] * len(wanted)
        warmed = loads = 0
        gen = self.cluster.generation
        for (key, (kind, scope, item_id)), data in zip(wanted, found, strict=True):
            expire_at = self._l2_copy_lasts(data, now + margin)
            if data is not None and expire_at is not False:
                if self.cluster.generation == gen:  # not if an invalidation ran since the MGET
                    self.node.l1.set(key, data, expire_at)
                    warmed += 1
                continue
            if loads >= self.config.prewarm_max_per_call:
                continue
            loads += 1
            warmed += self._prewarm_from_mlt(key, kind, scope, item_id)
        self.telemetry.prewarmed += warmed
        if warmed:
            log.info("Prewarmed %d hot items for organ %s (%d from Mlt)", warmed, self.organ_id, loads)
        return warmed

    def _l2_copy_lasts(self, data: bytes | None, until: float) -> float | bool | None:
        """The L2 copy's expiry if it lasts past ``until`` (``None``: never expires), else ``False``."""
        if data is None:
            return False
        try:
            expire_at = peek_expire_at(data)
        except CodecError:
            self.telemetry.corrupt_entries += 1
            return False
        return expire_at if expire_at is None or expire_at > until else False

    def _prewarm_from_mlt(self, key: str, kind: str, scope: str, item_id: str) -> int:
        """Load one item from Mlt under the cluster lease, so a write meanwhile refuses the fill."""
        if kind == "task" and scope == "by_id":
            mlt = self.cluster.mlt
            outcome = self._reads.lead_if_free(key, lambda: mlt.get_task(item_id), self._task_ttl)
        else:
            outcome = self._reads.lead_if_free(key, self._reads.item_loader(kind, scope, item_id, None), None)
        return int(outcome is not None and outcome.filled and outcome.value is not None)


def _no_load() -> Any:
    return None
