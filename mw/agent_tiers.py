"""One agent's view of the tiers: its L0, its node's L1, the cluster's L2 and Mlt, and its counters.

Every read path (the protocol's steps, batched reads, prewarming) decodes and fills through the
few methods here, so "what a hit fills" and "what counts as a hit" are written once.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mw import keys as K
from mw.clock import Clock
from mw.cluster import DEFAULT_NODE, Cluster, cluster_for
from mw.config import MwConfig
from mw.errors import CodecError
from mw.telemetry import Telemetry, hot_list, memory_metrics, process_telemetry
from mw.tiers import MISS
from mw.tiers.l0 import L0Cache

log = logging.getLogger("mw")


def _retire(l0: L0Cache, node: Any, telemetry: Telemetry) -> None:
    telemetry.l0_evictions = l0.evictions  # the process totals keep a closed agent's evictions too
    l0.clear()
    node.l0s.discard(l0)
    process_telemetry.retire(telemetry)


class AgentTiers:
    """The tiers one agent ("organ") reads and fills, and the telemetry of those reads.

    ``config`` defaults to :meth:`MwConfig.from_env` read now. ``node`` names the node whose L1 this
    agent shares (default: one per process). ``clock`` is the time seam every expiry reads. ``l1``
    gives a node made here a node tier that lives elsewhere (the Ray node actor), see ``Cluster.node``.
    ``cluster``: the process this agent lives in (``mw.cluster.cluster_for(..., name=...)``), instead of the
    one of ``config`` and ``clock``; ``config`` and ``clock`` then default to its own and may not differ.
    """

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
        self.organ_id = K.check_component("organ_id", organ_id)
        if cluster is not None:
            if config is not None and config != cluster.config:
                raise ValueError(f"config differs from the configuration of cluster {cluster.name!r}")
            if clock is not None and clock is not cluster.clock:
                raise ValueError(f"clock is not the clock of cluster {cluster.name!r}")
            self.config = cluster.config
            self.cluster: Cluster = cluster
        else:
            self.config = MwConfig.from_env() if config is None else config
            self.cluster = cluster_for(self.config, clock)
        self.clock = self.cluster.clock
        self.node = self.cluster.node(node, l1)
        self.enabled = self.config.enabled
        self.l0 = L0Cache(self.config.l0_max_items, self.config.l0_max_bytes, self.clock, self.cluster.holders)
        self.node.l0s.add(self.l0)
        self.telemetry = Telemetry(self.config.hot_items_capacity, self.config.hot_items_half_life_s, self.clock)
        self.hot_add = self.telemetry.hot.add
        self.deltas: dict[str, float] = {}
        """Load time per key, for XFetch (bounded by the L0 item limit)."""
        process_telemetry.register(self.telemetry)
        # An agent dropped without close() must not stay alive through the holder index: clear its L0
        # (which leaves the index) and keep its counts in the process totals when it is collected.
        self._retire = weakref.finalize(self, _retire, self.l0, self.node, self.telemetry)
        if not self.enabled:
            log.info("Mw caching disabled (MW_ENABLED=false) for organ %s: reads go to Mlt", self.organ_id)

    # --- local reads ---------------------------------------------------------------------------------
    def l0_get(self, key: str) -> Any:
        """L0 alone, counted as an L0 hit; :data:`MISS` if absent."""
        value = self.l0.get(key, MISS)
        if value is not MISS:
            self.telemetry.l0_hits += 1
        return value

    def local(self, key: str) -> Any:
        """L0, then this node's L1 (filling L0)."""
        value = self.l0_get(key)
        if value is not MISS:
            return value
        gen = self.cluster.generation
        return self.from_l1(key, self.node.l1.get(key), gen)

    def from_l1(self, key: str, data: bytes | None, gen: int) -> Any:
        if data is None:
            return MISS
        value = self.accept(key, data, gen, from_l2=False)
        if value is not MISS:
            self.telemetry.l1_hits += 1
        return value

    def organ_typed(self, kind: str, item_id: str) -> Any:
        """This agent's own typed item (``set_organ_item_typed``), L0 only."""
        return self.l0_get(K.organ_typed_key(self.organ_id, kind, item_id))

    def organ_untyped(self, item_id: str, is_global: bool) -> Any:
        """This agent's own item (``set_item``); a global id never names one."""
        if is_global or item_id.startswith(K.GLOBAL_PREFIX):
            return MISS
        return self.l0_get(K.organ_key(self.organ_id, item_id))

    # --- what a read from L1/L2 fills ----------------------------------------------------------------
    def accept(
        self, key: str, data: bytes, gen: int, *, from_l2: bool, counted: bool = False, recheck: bool = False
    ) -> Any:
        """Decode an envelope read from L1/L2 and fill the tiers above; a corrupt or expired one is a miss.

        ``gen`` is the cluster generation noted before the read: if anything was dropped since, the
        value is returned but not kept (it may be what an invalidation just removed). ``counted``: the
        read was already counted as a miss (a value found after the lease, or the holder's): it is not
        an L2 hit too, so hits + misses stay the reads. ``recheck``: the same entry the read's first
        look saw, a corrupt one already counted.
        """
        try:
            value, expire_at, delta, size = self.cluster.codec.decode_sized(data)
        except CodecError as exc:
            if recheck:
                return MISS
            self.telemetry.corrupt_entries += 1
            log.warning("Corrupt cache entry %s in %s treated as a miss: %s", key, "L2" if from_l2 else "L1", exc)
            if not from_l2:
                self.node.l1.pop(key)
            return MISS
        if expire_at is not None and expire_at <= self.clock():
            return MISS
        if from_l2:
            cluster = self.cluster
            pending = cluster.pending
            # A write or delete L2 missed: the copy there is old until the replay deletes it, and a copy read
            # before a replay that ran since may be one it deleted.
            if (pending and pending.deletes(key)) or cluster.replay_generation > gen:
                return MISS
        if from_l2 and not counted:
            self.telemetry.l2_hits += 1
        cluster = self.cluster
        if cluster.generation != gen:
            return value
        if from_l2:
            self.node.l1.set(key, data, expire_at)
        self.l0.set(key, value, expire_at, size)
        self.remember_delta(key, delta)
        if cluster.generation != gen:
            self.unfill(key)
        return value

    def accept_l2(self, key: str, data: bytes | None, gen: int) -> Any:
        return MISS if data is None else self.accept(key, data, gen, from_l2=True)

    def keep(self, key: str, data: bytes, value: Any, expire_at: float | None, size: int, gen: int) -> None:
        """Keep a value this agent loaded or wrote in L1 and L0, unless a drop ran since ``gen``."""
        self.node.l1.set(key, data, expire_at)
        self.l0.set(key, value, expire_at, size)
        if self.cluster.generation != gen:
            self.unfill(key)

    def unfill(self, key: str) -> None:
        """Take back copies just filled: an invalidation raced with the fill."""
        self.node.l1.pop(key)
        self.l0.pop(key)

    def remember_delta(self, key: str, delta: float) -> None:
        """Load time of a key, for XFetch: it arrives in the envelope, whoever loaded the value."""
        if delta <= 0:
            return
        if len(self.deltas) >= self.config.l0_max_items:
            self.deltas.clear()
        self.deltas[key] = delta

    def is_negative(self, data: bytes | None, nkey: str | None = None) -> bool:
        """Whether a negative-cache marker read from a tier (under ``nkey``, if from L2) is valid and unexpired."""
        if data is None:
            return False
        pending = self.cluster.pending
        if nkey is not None and pending and pending.deletes(nkey):
            return False
        try:
            _, expire_at = self.cluster.codec.decode(data)
        except CodecError:
            self.telemetry.corrupt_entries += 1
            return False
        return expire_at is None or expire_at > self.clock()

    def missed(self, key: str) -> None:
        self.telemetry.misses += 1
        log.debug("MISS %s (organ %s)", key, self.organ_id)

    # --- what the agent reports --------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """``get_telemetry()``: the counters, the L0's size and the hit ratio."""
        out: dict[str, Any] = dict(self.telemetry.counters())
        out.update(
            organ_id=self.organ_id,
            node=self.node.name,
            enabled=self.enabled,
            l0_items=len(self.l0),
            l0_bytes=self.l0.nbytes,
            l0_evictions=self.l0.evictions,
        )
        out["hit_ratio"] = out["hits"] / (out["hits"] + out["misses"]) if out["hits"] + out["misses"] else 0.0
        return out

    def hot_items(self, top_n: int) -> list[list[Any]]:
        return hot_list(self.telemetry.hot.top(top_n * 2), top_n)

    def heartbeat(self, top_n: int) -> dict[str, Any]:
        """The heartbeat's ``memory_metrics``: every ``mw_*`` field of the checklist."""
        counters = self.telemetry.counters()
        counters["l0_evictions"] = self.l0.evictions
        return memory_metrics(
            counters,
            self.telemetry.hot.top(top_n * 2),
            enabled=self.enabled,
            l0_items=len(self.l0),
            l0_bytes=self.l0.nbytes,
            l0_max_items=self.config.l0_max_items,
            l0_max_bytes=self.config.l0_max_bytes,
            top_n=top_n,
        )

    def close(self) -> None:
        """Drop this agent's L0 and fold its counters into the process totals (once)."""
        self._retire()
