"""Prewarming: refill this node's copies of an agent's hottest items before they expire.

One ``MGET`` asks L2 for all of them: a copy there refills L1 without touching Mlt. Only items L2
lacks (or holds for less than the margin) are loaded from Mlt, under the lease, so a write meanwhile
refuses the fill, and at most ``MW_PREWARM_MAX_PER_CALL`` per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mw import keys as K
from mw.codec import peek_expire_at
from mw.errors import CodecError, TierUnavailable
from mw.readthrough import ReadThrough

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers

log = logging.getLogger("mw")

TaskTTL = Callable[[Mapping[str, Any]], float]


def prewarm(tiers: AgentTiers, reads: ReadThrough, task_ttl: TaskTTL, top_n: int, near_expiry: float) -> int:
    """Warm the ``top_n`` hottest items whose node copy is missing or within ``near_expiry`` of its L1 TTL.

    Returns how many were warmed (also counted in telemetry as ``prewarmed``).
    """
    if not tiers.enabled:
        return 0
    now = tiers.clock()
    margin = near_expiry * tiers.config.l1_ttl_s
    wanted = []
    for key, _count in tiers.telemetry.hot.top(top_n):
        parts = K.parse_typed(key)
        expire_at = tiers.node.l1.expire_at(key)
        if parts is not None and (expire_at is None or expire_at - now <= margin):
            wanted.append((key, parts))
    if not wanted:
        return 0
    try:
        found = tiers.cluster.l2.mget([key for key, _ in wanted])
    except TierUnavailable:
        tiers.telemetry.l2_errors += 1
        found = [None] * len(wanted)
    warmed = loads = 0
    gen = tiers.cluster.generation
    for (key, (kind, scope, item_id)), data in zip(wanted, found, strict=True):
        expire_at = _l2_copy_lasts(tiers, data, now + margin)
        if data is not None and expire_at is not False:
            # Not if an invalidation ran since the MGET; counted only if L1 kept the copy (not with MW_L1_TTL_S=0, or
            # an entry above L1's byte bound): mw_prewarmed says what was warmed.
            if tiers.cluster.generation == gen and tiers.node.l1.set(key, data, expire_at) is not None:
                warmed += 1
            continue
        if loads >= tiers.config.prewarm_max_per_call:
            continue
        loads += 1
        warmed += _from_mlt(tiers, reads, task_ttl, key, (kind, scope, item_id))
    tiers.telemetry.prewarmed += warmed
    if warmed:
        log.info("Prewarmed %d hot items for organ %s (%d from Mlt)", warmed, tiers.organ_id, loads)
    return warmed


def _l2_copy_lasts(tiers: AgentTiers, data: bytes | None, until: float) -> float | bool | None:
    """The L2 copy's expiry if it lasts past ``until`` (``None``: never expires), else ``False``."""
    if data is None:
        return False
    try:
        expire_at = peek_expire_at(data)
    except CodecError:
        tiers.telemetry.corrupt_entries += 1
        return False
    return expire_at if expire_at is None or expire_at > until else False


def _from_mlt(tiers: AgentTiers, reads: ReadThrough, task_ttl: TaskTTL, key: str, parts: tuple[str, str, str]) -> int:
    """Load one item from Mlt under the cluster lease (task rows from the task table)."""
    kind, scope, item_id = parts
    if kind == "task" and scope == "by_id":
        mlt = tiers.cluster.mlt
        outcome = reads.lead_if_free(key, lambda: mlt.get_task(item_id, with_meta=True), task_ttl)
    else:
        outcome = reads.lead_if_free(key, reads.item_loader(kind, scope, item_id, None), None)
    return int(outcome is not None and outcome.filled and outcome.value is not None)
