"""Batched reads (``get_many_typed``): L0 and L1 per key, then one ``MGET`` for whatever they lacked.

No load: a batch is a lookup. Every key is checked against the grammar before any is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mw import keys as K
from mw.errors import TierUnavailable
from mw.tiers import MISS

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers

Pending = list[tuple[str, str]]


def _local(tiers: AgentTiers, kind: str, scope: str, item_ids: list[str]) -> tuple[dict[str, Any], Pending]:
    out: dict[str, Any] = {}
    pending: Pending = []
    keys = [K.global_typed_key(kind, scope, item_id) for item_id in item_ids]
    for item_id, key in zip(item_ids, keys, strict=True):
        tiers.hot_add(key)
        value = tiers.local(key) if tiers.enabled else MISS
        if value is MISS:
            pending.append((item_id, key))
        else:
            out[item_id] = value
    return out, pending


def _from_l2(
    tiers: AgentTiers, out: dict[str, Any], pending: Pending, found: list[bytes | None], gen: int
) -> dict[str, Any]:
    for (item_id, key), data in zip(pending, found, strict=True):
        value = tiers.accept_l2(key, data, gen)
        if value is MISS:
            tiers.missed(key)
        else:
            out[item_id] = value
    return out


def get_many(tiers: AgentTiers, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
    """``{item_id: value}`` for the items some tier holds; absent ones are left out."""
    out, pending = _local(tiers, kind, scope, item_ids)
    found: list[bytes | None] = [None] * len(pending)
    gen = tiers.cluster.generation
    if pending and tiers.enabled:
        try:
            found = tiers.cluster.l2.mget([key for _, key in pending])
        except TierUnavailable:
            tiers.telemetry.l2_errors += 1
    return _from_l2(tiers, out, pending, found, gen)


async def get_many_async(tiers: AgentTiers, kind: str, scope: str, item_ids: list[str]) -> dict[str, Any]:
    """As :func:`get_many`, with one asyncio ``MGET``."""
    out, pending = _local(tiers, kind, scope, item_ids)
    found: list[bytes | None] = [None] * len(pending)
    gen = tiers.cluster.generation
    if pending and tiers.enabled:
        try:
            found = await tiers.cluster.l2.mget_async([key for _, key in pending])
        except TierUnavailable:
            tiers.telemetry.l2_errors += 1
    return _from_l2(tiers, out, pending, found, gen)
