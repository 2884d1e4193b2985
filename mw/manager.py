"""``MwManager``: one agent's view of the tiers, with the API names the origin system's users call.

Layers, each a module: :mod:`mw.core` (tiers, reads, writes, deletes, telemetry) ->
:mod:`mw.readthrough` (stampede-protected loads) -> :mod:`mw.tasks` (task rows) -> this class
(the public read-through API, in-flight claims, prewarming).
"""

from __future__ import annotations

import logging
from typing import Any

from mw import keys as K
from mw.codec import peek_expire_at
from mw.core import Loader, check_ttl, ttl_ms
from mw.errors import CodecError
from mw.tasks import TaskCache
from mw.tiers.l2 import TierUnavailable

log = logging.getLogger("mw")


class MwManager(TaskCache):
    """The working memory of one agent ("organ"); see :class:`mw.core.ManagerCore` for the arguments."""

    def try_set_inflight(self, key: str, ttl_s: float) -> bool:
        """Atomically claim ``key`` for ``ttl_s``: ``True`` only for the one caller that got it.

        A thin wrapper over the cluster lease (:mod:`mw.lease`) that ``get_or_load`` uses; release it
        early with :meth:`release_inflight`, or let it expire.
        """
        ttl = check_ttl(ttl_s)
        lkey = K.lease_key(K.check_full_key(key))
        try:
            token = self.cluster.leases.acquire(lkey, ttl_ms(ttl))
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return False
        if token is not None:
            self._inflight[key] = token
        return token is not None

    def release_inflight(self, key: str) -> bool:
        """Release a claim this manager holds (never someone else's)."""
        token = self._inflight.pop(key, None)
        if token is None:
            return False
        try:
            return self.cluster.leases.release(K.lease_key(key), token)
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return False

    # --- read-through ------------------------------------------------------------------------------------
    def get_or_load(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        """Read-through for any item kind, protected against stampedes (see :mod:`mw.readthrough`).

        ``loader`` takes no arguments and returns the value, or ``None`` for "absent" (remembered in the
        negative cache for ``MW_TASK_TTL_NEGATIVE_S``). Without a loader, Mlt's item table is read.
        """
        key = K.global_typed_key(kind, scope, item_id)
        ttl = None if ttl_s is None else check_ttl(ttl_s)
        value, _ = self._read_through(key, self._item_loader(kind, scope, item_id, loader), ttl)
        return value

    async def get_or_load_async(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        """As :meth:`get_or_load`; ``loader`` may be a coroutine function."""
        key = K.global_typed_key(kind, scope, item_id)
        ttl = None if ttl_s is None else check_ttl(ttl_s)
        value, _ = await self._read_through_async(key, self._item_loader_async(kind, scope, item_id, loader), ttl)
        return value

    def prewarm(self, top_n: int = 10, near_expiry: float = 0.2) -> int:
        """Warm the hottest items whose node copy is missing or within ``near_expiry`` of its L1 TTL.

        One ``MGET`` asks L2 for all of them: a copy there refills this node's L1 without touching Mlt.
        Only items L2 lacks (or holds for less than the margin) are loaded from Mlt (task rows from the
        task table), at most ``MW_PREWARM_MAX_PER_CALL`` per call. Returns how many were warmed (also
        counted in telemetry as ``prewarmed``).
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
        ttl_for: Any = None
        load = self._item_loader(kind, scope, item_id, None)
        if kind == "task" and scope == "by_id":
            mlt = self.cluster.mlt
            ttl_for = self._task_ttl

            def load() -> Any:
                return mlt.get_task(item_id)

        lkey = K.lease_key(key)
        try:
            token = self.cluster.leases.acquire(lkey, ttl_ms(self.config.lease_ttl_s))
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return 0
        if token is None:
            return 0  # someone is loading it already
        before = self.telemetry.stale_sets_prevented
        value = self._hold(key, lkey, token, load, None, ttl_for)
        return int(value is not None and self.telemetry.stale_sets_prevented == before)
