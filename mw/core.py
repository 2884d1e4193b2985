"""The core of an agent's working memory: its tiers, reads, writes, deletes, negative cache, telemetry.

Reads go L0 -> L1 -> L2 -> Mlt (or the caller's loader) and fill the tiers above the one that answered.
Writes go through the typed API to every tier, after dropping every other copy in the process, so no
agent keeps reading a value another agent replaced. A tier that fails is counted and skipped.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import Any

from mw import keys as K
from mw.clock import Clock
from mw.cluster import DEFAULT_NODE, Cluster, cluster_for
from mw.config import MwConfig
from mw.errors import CodecError
from mw.telemetry import Telemetry, hot_list, memory_metrics, process_telemetry
from mw.tiers import MISS as _MISS
from mw.tiers.l0 import L0Cache
from mw.tiers.l2 import TierUnavailable
from mw.ttl import check_ttl

log = logging.getLogger("mw")

_typed_key = K.global_typed_key

Loader = Callable[[], Any]


def ttl_ms(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s * 1000))


def _retire(l0: L0Cache, node: Any, telemetry: Telemetry) -> None:
    l0.clear()
    node.l0s.discard(l0)
    process_telemetry.retire(telemetry)


class ManagerCore:
    """The working memory of one agent ("organ"): tiers, reads, writes, deletes, telemetry.

    :class:`mw.MwManager` is the facade that adds read-through (:mod:`mw.protocol`), task rows and prewarming.

    ``config`` defaults to :meth:`MwConfig.from_env` read now. ``node`` names the node whose L1 this
    agent shares (default: one per process). ``clock`` is the time seam every expiry reads. ``l1``
    gives a node made here a node tier that lives elsewhere (the Ray node actor), see ``Cluster.node``.
    """

    def __init__(
        self,
        organ_id: str,
        config: MwConfig | None = None,
        *,
        node: str = DEFAULT_NODE,
        clock: Clock | None = None,
        l1: Any = None,
    ) -> None:
        self.organ_id = K.check_component("organ_id", organ_id)
        self.config = MwConfig.from_env() if config is None else config
        self.cluster: Cluster = cluster_for(self.config, clock)
        self.clock = self.cluster.clock
        self.node = self.cluster.node(node, l1)
        self.enabled = self.config.enabled
        self._l0 = L0Cache(self.config.l0_max_items, self.config.l0_max_bytes, self.clock, self.cluster.holders)
        self.node.l0s.add(self._l0)
        self.telemetry = Telemetry(self.config.hot_items_capacity)
        self._hot_add = self.telemetry.hot.add
        self._flight = self.cluster.flight
        self._deltas: dict[str, float] = {}
        self._inflight: dict[str, bytes] = {}
        process_telemetry.register(self.telemetry)
        # An agent dropped without close() must not stay alive through the holder index: clear its L0
        # (which leaves the index) and keep its counts in the process totals when it is collected.
        self._retire = weakref.finalize(self, _retire, self._l0, self.node, self.telemetry)
        if not self.enabled:
            log.info("Mw caching disabled (MW_ENABLED=false) for organ %s: reads go to Mlt", self.organ_id)

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

    # --- read path pieces (shared by sync and async) --------------------------------------------------
    def _local(self, key: str) -> Any:
        """L0, then this node's L1 (filling L0)."""
        value = self._l0.get(key, _MISS)
        if value is not _MISS:
            self.telemetry.l0_hits += 1
            return value
        return self._after_l0(key)

    def _after_l0(self, key: str) -> Any:
        gen = self.cluster.generation
        return self._from_l1(key, self.node.l1.get(key), gen)

    def _from_l1(self, key: str, data: bytes | None, gen: int) -> Any:
        if data is None:
            return _MISS
        value = self._accept(key, data, gen, from_l2=False)
        if value is not _MISS:
            self.telemetry.l1_hits += 1
        return value

    async def _local_async(self, key: str) -> Any:
        """As :meth:`_local`, awaiting L1 (a node tier in another process must not block the loop)."""
        value = self._l0.get(key, _MISS)
        if value is not _MISS:
            self.telemetry.l0_hits += 1
            return value
        gen = self.cluster.generation
        return self._from_l1(key, await self.node.l1.get_async(key), gen)

    def _accept(self, key: str, data: bytes, gen: int, *, from_l2: bool, recheck: bool = False) -> Any:
        """Decode an envelope read from L1/L2 and fill the tiers above; a corrupt or expired one is a miss.

        ``gen`` is the cluster generation noted before the read: if anything was dropped since, the
        value is returned but not kept (it may be what an invalidation just removed).
        """
        try:
            value, expire_at, delta, size = self.cluster.codec.decode_sized(data)
        except CodecError as exc:
            if recheck:  # the same corrupt entry, seen again after the lease: counted once per read
                return _MISS
            self.telemetry.corrupt_entries += 1
            log.warning("Corrupt cache entry %s in %s treated as a miss: %s", key, "L2" if from_l2 else "L1", exc)
            if not from_l2:
                self.node.l1.pop(key)
            return _MISS
        if expire_at is not None and expire_at <= self.clock():
            return _MISS
        if from_l2:
            self.telemetry.l2_hits += 1
        cluster = self.cluster
        if cluster.generation != gen:
            return value
        if from_l2:
            self.node.l1.set(key, data, expire_at)
        self._l0.set(key, value, expire_at, size)
        self._remember_delta(key, delta)
        if cluster.generation != gen:
            self._unfill(key)
        return value

    def _unfill(self, key: str) -> None:
        """Take back copies just filled: an invalidation raced with the fill."""
        self.node.l1.pop(key)
        self._l0.pop(key)

    def _remember_delta(self, key: str, delta: float) -> None:
        """Load time of a key, for XFetch: it arrives in the envelope, whoever loaded the value."""
        if delta <= 0:
            return
        if len(self._deltas) >= self.config.l0_max_items:
            self._deltas.clear()
        self._deltas[key] = delta

    def _l2_get(self, key: str) -> tuple[bytes | None, int]:
        """``(data, generation noted before the read)``."""
        gen = self.cluster.generation
        try:
            return self.cluster.l2.get(key), gen
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return None, gen

    async def _l2_get_async(self, key: str) -> tuple[bytes | None, int]:
        gen = self.cluster.generation
        try:
            return await self.cluster.l2.get_async(key), gen
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return None, gen

    def _shared(self, key: str, data: bytes | None, gen: int) -> Any:
        return _MISS if data is None else self._accept(key, data, gen, from_l2=True)

    def _missed(self, key: str) -> None:
        self.telemetry.misses += 1
        log.debug("MISS %s (organ %s)", key, self.organ_id)

    # --- the agent's own items (the public reads are in mw.manager, their protocol in mw.protocol) ---
    def _organ_typed(self, kind: str, item_id: str) -> Any:
        value = self._l0.get(K.organ_typed_key(self.organ_id, kind, item_id), _MISS)
        if value is not _MISS:
            self.telemetry.l0_hits += 1
        return value

    def _organ_untyped(self, item_id: str, is_global: bool) -> Any:
        if is_global or item_id.startswith(K.GLOBAL_PREFIX):
            return _MISS
        value = self._l0.get(K.organ_key(self.organ_id, item_id), _MISS)
        if value is not _MISS:
            self.telemetry.l0_hits += 1
        return value

    def _many_local(self, kind: str, scope: str, item_ids: list[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        out: dict[str, Any] = {}
        pending: list[tuple[str, str]] = []
        keys = [K.global_typed_key(kind, scope, item_id) for item_id in item_ids]  # all valid before any is read
        for item_id, key in zip(item_ids, keys, strict=True):
            self.telemetry.hot.add(key)
            value = self._local(key) if self.enabled else _MISS
            if value is _MISS:
                pending.append((item_id, key))
            else:
                out[item_id] = value
        return out, pending

    def _many_from_l2(
        self, out: dict[str, Any], pending: list[tuple[str, str]], found: list[bytes | None], gen: int
    ) -> dict[str, Any]:
        for (item_id, key), data in zip(pending, found, strict=True):
            value = self._shared(key, data, gen)
            if value is _MISS:
                self._missed(key)
            else:
                out[item_id] = value
        return out

    def get_many_typed(self, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
        """Several typed items; L2 is asked once (MGET) for everything L0/L1 did not have. No Mlt."""
        out, pending = self._many_local(kind, scope, item_ids)
        found: list[bytes | None] = [None] * len(pending)
        gen = self.cluster.generation
        if pending and self.enabled:
            try:
                found = self.cluster.l2.mget([key for _, key in pending])
            except TierUnavailable:
                self.telemetry.l2_errors += 1
        return self._many_from_l2(out, pending, found, gen)

    async def get_many_typed_async(self, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
        """As :meth:`get_many_typed`, with one asyncio ``MGET``."""
        out, pending = self._many_local(kind, scope, item_ids)
        found: list[bytes | None] = [None] * len(pending)
        gen = self.cluster.generation
        if pending and self.enabled:
            try:
                found = await self.cluster.l2.mget_async([key for _, key in pending])
            except TierUnavailable:
                self.telemetry.l2_errors += 1
        return self._many_from_l2(out, pending, found, gen)

    # --- writes ----------------------------------------------------------------------------------------
    def _write(self, key: str, value: Any, ttl_s: float | None, *, broadcast: bool = True) -> None:
        ttl = self.config.l2_ttl_s if ttl_s is None else check_ttl(ttl_s)
        if ttl == 0:
            self._delete_everywhere([key])
            return
        expire_at = self.clock() + ttl
        data, size = self.cluster.codec.encode_sized(value, expire_at, key)
        neg = K.negative_key(key)
        publish = None
        clear: tuple[str, ...] = (neg,)
        cluster = self.cluster
        if broadcast:
            cluster.drop_local([key, neg], keep=self._l0)
            publish = cluster.inv_message([key, neg])
            # A load still in flight would overwrite this write with what it read before: taking its
            # lease away makes its fill refused (the same stale-set rule as for deletes).
            clear = (neg, K.lease_key(key))
        else:
            cluster.drop_local([neg])
        gen = cluster.generation
        try:
            cluster.l2.set(key, data, ttl_ms(ttl), clear=clear, publish=publish)
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            self.telemetry.l2_write_failures += 1
            if broadcast:  # a fill (not broadcast) of a loaded value may stay local, as reads do
                self._l2_write_failed(key, neg, publish)
                return
        else:
            cluster.reached([key, *clear] if broadcast else [])
        if broadcast:
            # Readers that read the old L2 value while the command ran must not keep it.
            cluster.drop_local([key], keep=self._l0)
            gen += 1
        self.node.l1.set(key, data, expire_at)
        self._l0.set(key, value, expire_at, size)
        if cluster.generation != gen:  # another drop ran meanwhile: a newer write may be in L2
            self._unfill(key)

    def _l2_write_failed(self, key: str, neg: str, publish: tuple[str, bytes] | None) -> None:
        """Serve no value L2 never took: the copies here go, other processes drop theirs once L2 is back.

        A write that timed out may have landed, so this process's own copy is unknown too. The write
        itself is never replayed: a late replay could overwrite a newer write.
        """
        first = not self.cluster.pending
        (log.warning if first else log.debug)(
            "Write of %s could not reach L2: dropped from this process's tiers; other processes drop their "
            "copies once L2 answers",
            key,
        )
        self.cluster.unreached([key, neg], publish)

    def set_global_item_typed(
        self, kind: str, scope: str, item_id: str, value: Any, ttl_s: float | None = None
    ) -> None:
        """The sanctioned global write: ``global:item:{kind}:{scope}:{id}`` in L0, L1 and L2."""
        key = K.global_typed_key(kind, scope, item_id)
        if self.enabled:
            self._write(key, value, ttl_s)

    def set_global_item(self, item_id: str, value: Any, ttl_s: float | None = None) -> None:
        """Write-through under ``global:item:{item_id}`` (an already-prefixed id is not prefixed again)."""
        key = K.global_key(item_id)
        if self.enabled:
            self._write(key, value, ttl_s)

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

    # --- deletes ---------------------------------------------------------------------------------------
    def _delete_plan(self, keys: list[str]) -> tuple[list[str], list[str], tuple[str, bytes] | None]:
        """Drop local copies now; return what goes everywhere (the keys and their negative markers), what
        else L2 deletes (those markers and the leases) and the message.

        Deleting the lease is what refuses a fill that was loaded before this delete (stale set); deleting
        the negative marker is what makes a delete a full reset (the store may hold the item now).
        """
        shared = [k for k in keys if not K.is_internal(k)]
        negs = [K.negative_key(k) for k in shared]
        dropped = [*keys, *negs]
        self.cluster.drop_local(dropped)
        return dropped, [*negs, *(K.lease_key(k) for k in shared)], self.cluster.inv_message(dropped)

    def _l2_delete_failed(self, keys: list[str], l2_keys: list[str], message: tuple[str, bytes] | None) -> None:
        """Deleting again is always safe, so the delete is replayed (with its message) once L2 answers."""
        self.telemetry.l2_errors += 1
        self.telemetry.l2_write_failures += 1
        first = not self.cluster.pending
        (log.warning if first else log.debug)("Delete of %s could not reach L2; replayed once L2 answers", keys)
        self.cluster.unreached(keys, message, l2_keys)

    def _delete_everywhere(self, keys: list[str]) -> bool:
        dropped, also, message = self._delete_plan(keys)
        l2_keys = [*keys, *also]
        try:
            found = self.cluster.l2.delete(keys, publish=message, also=also) > 0  # values only
        except TierUnavailable:
            self._l2_delete_failed(dropped, l2_keys, message)
            return True
        finally:
            self.cluster.drop_local(dropped)  # copies read from L2 while the delete ran
        self.cluster.reached(l2_keys)
        return found

    async def _delete_everywhere_async(self, keys: list[str]) -> bool:
        dropped, also, message = self._delete_plan(keys)
        l2_keys = [*keys, *also]
        try:
            found = await self.cluster.l2.delete_async(keys, publish=message, also=also) > 0  # values only
        except TierUnavailable:
            self._l2_delete_failed(dropped, l2_keys, message)
            return True
        finally:
            self.cluster.drop_local(dropped)
        self.cluster.reached(l2_keys)
        return found

    def del_global_key(self, key: str) -> bool:
        """Delete a global item from every tier and every agent's L0 in this process."""
        return self._delete_everywhere([K.global_key(key)]) if self.enabled else False

    del_global_key_sync = del_global_key

    async def del_global_key_async(self, key: str) -> bool:
        return await self._delete_everywhere_async([K.global_key(key)]) if self.enabled else False

    def del_global_item_typed(self, kind: str, scope: str, item_id: str) -> bool:
        return self._delete_everywhere([K.global_typed_key(kind, scope, item_id)]) if self.enabled else False

    async def del_global_item_typed_async(self, kind: str, scope: str, item_id: str) -> bool:
        if not self.enabled:
            return False
        return await self._delete_everywhere_async([K.global_typed_key(kind, scope, item_id)])

    def delete_organ_item(self, item_id: str) -> bool:
        return self._l0.pop(K.organ_key(self.organ_id, item_id)) is not None

    def delete_organ_item_typed(self, kind: str, item_id: str) -> bool:
        return self._l0.pop(K.organ_typed_key(self.organ_id, kind, item_id)) is not None

    async def delete_organ_item_async(self, item_id: str) -> bool:
        return self.delete_organ_item(item_id)

    async def delete_organ_item_typed_async(self, kind: str, item_id: str) -> bool:
        return self.delete_organ_item_typed(kind, item_id)

    async def clear_async(self) -> int:
        return self.clear()

    def clear(self) -> int:
        """Empty this agent's L0."""
        n = self._l0.clear()
        log.info("Cleared L0 cache for organ %s (%d items)", self.organ_id, n)
        return n

    # --- negative cache and in-flight claims ------------------------------------------------------------
    def set_negative_cache(self, kind: str, scope: str, item_id: str, ttl_s: float | None = None) -> None:
        """Mark an item known absent for ``ttl_s`` (default ``MW_TASK_TTL_NEGATIVE_S``).

        Call it only after the store confirmed the absence; any write of the item clears the mark.
        """
        if not self.enabled:
            return
        ttl = self.config.negative_ttl_s if ttl_s is None else check_ttl(ttl_s)
        if ttl == 0:
            return
        nkey = K.negative_key(K.global_typed_key(kind, scope, item_id))
        expire_at = self.clock() + ttl
        cluster = self.cluster
        data = cluster.codec.encode(True, expire_at, nkey)
        gen = cluster.generation
        try:
            cluster.l2.set(nkey, data, ttl_ms(ttl))
        except TierUnavailable:
            # A mark only this process holds would answer "absent" after another process wrote the item.
            self.telemetry.l2_errors += 1
            self.telemetry.l2_write_failures += 1
            return
        self.node.l1.set(nkey, data, expire_at)
        if cluster.generation != gen:  # a write of the item (which clears the mark) raced with this one
            self.node.l1.pop(nkey)

    def _is_negative(self, data: bytes | None) -> bool:
        if data is None:
            return False
        try:
            _, expire_at = self.cluster.codec.decode(data)
        except CodecError:
            self.telemetry.corrupt_entries += 1
            return False
        return expire_at is None or expire_at > self.clock()

    # --- telemetry -------------------------------------------------------------------------------------
    def get_hot_items(self, top_n: int = 10) -> list[list[Any]]:
        return hot_list(self.telemetry.hot.top(top_n * 2), top_n)

    async def get_hot_items_async(self, top_n: int = 10) -> list[list[Any]]:
        return self.get_hot_items(top_n)

    def get_telemetry(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.telemetry.counters())
        out.update(
            organ_id=self.organ_id,
            node=self.node.name,
            enabled=self.enabled,
            l0_items=len(self._l0),
            l0_bytes=self._l0.nbytes,
            l0_evictions=self._l0.evictions,
        )
        out["hit_ratio"] = out["hits"] / (out["hits"] + out["misses"]) if out["hits"] + out["misses"] else 0.0
        return out

    def reset_telemetry(self) -> None:
        self.telemetry.reset()

    def memory_metrics(self, top_n: int = 10) -> dict[str, Any]:
        """The heartbeat's ``memory_metrics``: every ``mw_*`` field of the checklist."""
        counters = self.telemetry.counters()
        counters["l0_evictions"] = self._l0.evictions
        return memory_metrics(
            counters,
            self.telemetry.hot.top(top_n * 2),
            enabled=self.enabled,
            l0_items=len(self._l0),
            l0_bytes=self._l0.nbytes,
            l0_max_items=self.config.l0_max_items,
            l0_max_bytes=self.config.l0_max_bytes,
            top_n=top_n,
        )

    def close(self) -> None:
        """Drop this agent's L0 and fold its counters into the process totals (once)."""
        self._retire()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.organ_id!r}, node={self.node.name!r}, enabled={self.enabled})"
