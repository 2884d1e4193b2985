"""Writes, deletes and negative-cache marks of one agent, to every tier of the cluster.

A write drops every other copy in the process first, so no agent keeps reading a value another
agent replaced; it clears the item's negative marker and lease in the same L2 command (a load still
in flight is then refused its fill), and publishes the invalidation. A write L2 did not take is
served nowhere; a delete L2 did not take is replayed once it answers (deleting twice is safe).

Each operation is written once, as a plan (before the L2 command) and its completion (after it); the sync
and the ``*_async`` forms differ only in how they send the one L2 command between the two.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mw import keys as K
from mw.errors import TierUnavailable
from mw.telemetry import task_ttls
from mw.ttl import check_ttl

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers

log = logging.getLogger("mw")


def ttl_ms(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s * 1000))


@dataclass
class _Write:
    """One write, prepared: what goes to L2 in one round trip and what the tiers keep afterwards."""

    key: str
    value: Any
    data: bytes
    size: int
    expire_at: float
    ttl_ms: int
    clear: tuple[str, ...]
    publish: tuple[str, bytes] | None
    broadcast: bool
    gen: int


def _write_plan(tiers: AgentTiers, key: str, value: Any, ttl_s: float | None, broadcast: bool) -> _Write | None:
    """Encode and drop the other copies; ``None`` when the TTL is 0 (the write is a delete)."""
    ttl = tiers.config.l2_ttl_s if ttl_s is None else check_ttl(ttl_s)
    if ttl == 0:
        return None
    cluster = tiers.cluster
    expire_at = tiers.clock() + ttl
    data, size = cluster.codec.encode_sized(value, expire_at, key)
    task_ttls.observe(key, value, ttl, tiers.config)
    neg = K.negative_key(key)
    publish = None
    clear: tuple[str, ...] = (neg,)
    if broadcast:
        cluster.drop_local([key, neg], keep=tiers.l0)
        publish = cluster.inv_message([key, neg])
        # A load still in flight would overwrite this write with what it read before: taking its
        # lease away makes its fill refused (the same stale-set rule as for deletes).
        clear = (neg, K.lease_key(key))
    else:
        cluster.drop_local([neg])
    return _Write(key, value, data, size, expire_at, ttl_ms(ttl), clear, publish, broadcast, cluster.generation)


def _write_sent(tiers: AgentTiers, w: _Write, failed: bool) -> None:
    """After L2 took the write (or could not be reached): record it, drop what readers raced in, keep the copy."""
    cluster = tiers.cluster
    gen = w.gen
    if failed:
        tiers.telemetry.l2_errors += 1
        tiers.telemetry.l2_write_failures += 1
        if w.broadcast:  # a fill (not broadcast) of a loaded value may stay local, as reads do
            _write_failed(tiers, w.key, K.negative_key(w.key), w.publish)
            return
    else:
        cluster.reached([w.key, *w.clear] if w.broadcast else [])
    if w.broadcast:
        # Readers that read the old L2 value while the command ran must not keep it.
        cluster.drop_local([w.key], keep=tiers.l0)
        gen += 1
    tiers.keep(w.key, w.data, w.value, w.expire_at, w.size, gen)  # not if another drop ran: a newer write may be in L2


def write(tiers: AgentTiers, key: str, value: Any, ttl_s: float | None, *, broadcast: bool = True) -> None:
    """``value`` under ``key`` in L0, L1 and L2 for ``ttl_s`` (default ``MW_L2_TTL_S``; 0 deletes).

    ``broadcast=False``: a fill of a loaded value (nothing changed, so nothing is invalidated).
    """
    w = _write_plan(tiers, key, value, ttl_s, broadcast)
    if w is None:
        delete_everywhere(tiers, [key])
        return
    try:
        tiers.cluster.l2.set(w.key, w.data, w.ttl_ms, clear=w.clear, publish=w.publish)
    except TierUnavailable:
        _write_sent(tiers, w, failed=True)
    else:
        _write_sent(tiers, w, failed=False)


async def write_async(tiers: AgentTiers, key: str, value: Any, ttl_s: float | None) -> None:
    """:func:`write` with the L2 command on the caller's event loop (a real Redis never blocks the loop)."""
    w = _write_plan(tiers, key, value, ttl_s, True)
    if w is None:
        await delete_everywhere_async(tiers, [key])
        return
    try:
        await tiers.cluster.l2.set_async(w.key, w.data, w.ttl_ms, clear=w.clear, publish=w.publish)
    except TierUnavailable:
        _write_sent(tiers, w, failed=True)
    else:
        _write_sent(tiers, w, failed=False)


def _write_failed(tiers: AgentTiers, key: str, neg: str, publish: tuple[str, bytes] | None) -> None:
    """Serve no value L2 never took: the copies here go, other processes drop theirs once L2 is back.

    A write that timed out may have landed, so this process's own copy is unknown too. The write
    itself is never replayed (a late replay could overwrite a newer write), but a delete of what L2
    still holds is: the value it replaced, its negative marker and its lease (a fill loaded before the
    write is refused). Without it every reader after the outage would get the old value for its TTL.
    """
    first = not tiers.cluster.pending
    (log.warning if first else log.debug)(
        "Write of %s could not reach L2: dropped from this process's tiers; its old L2 copy is deleted and "
        "other processes drop theirs once L2 answers",
        key,
    )
    tiers.cluster.unreached([key, neg], publish, [key, neg, K.lease_key(key)])


def _delete_plan(tiers: AgentTiers, keys: list[str]) -> tuple[list[str], list[str], tuple[str, bytes] | None]:
    """Drop local copies now; return what goes everywhere (the keys and their negative markers), what
    else L2 deletes (those markers and the leases) and the message.

    Deleting the lease is what refuses a fill that was loaded before this delete (stale set); deleting
    the negative marker is what makes a delete a full reset (the store may hold the item now).
    """
    shared = [k for k in keys if not K.is_internal(k)]
    negs = [K.negative_key(k) for k in shared]
    dropped = list(dict.fromkeys([*keys, *negs]))  # a caller may name a marker too (``task_keys``): once each
    tiers.cluster.drop_local(dropped)
    return dropped, [*negs, *(K.lease_key(k) for k in shared)], tiers.cluster.inv_message(dropped)


def _delete_failed(tiers: AgentTiers, keys: list[str], l2_keys: list[str], message: tuple[str, bytes] | None) -> None:
    """Deleting again is always safe, so the delete is replayed (with its message) once L2 answers."""
    tiers.telemetry.l2_errors += 1
    tiers.telemetry.l2_write_failures += 1
    first = not tiers.cluster.pending
    (log.warning if first else log.debug)("Delete of %s could not reach L2; replayed once L2 answers", keys)
    tiers.cluster.unreached(keys, message, l2_keys)


def delete_everywhere(tiers: AgentTiers, keys: list[str]) -> bool:
    """Drop ``keys`` (and their negative markers and leases) from every tier; True if L2 held a value."""
    dropped, also, message = _delete_plan(tiers, keys)
    l2_keys = [*keys, *also]
    cluster = tiers.cluster
    try:
        found = cluster.l2.delete(keys, publish=message, also=also) > 0  # values only
    except TierUnavailable:
        _delete_failed(tiers, dropped, l2_keys, message)
        return True
    finally:
        cluster.drop_local(dropped)  # copies read from L2 while the delete ran
    cluster.reached(l2_keys)
    return found


async def delete_everywhere_async(tiers: AgentTiers, keys: list[str]) -> bool:
    dropped, also, message = _delete_plan(tiers, keys)
    l2_keys = [*keys, *also]
    cluster = tiers.cluster
    try:
        found = await cluster.l2.delete_async(keys, publish=message, also=also) > 0  # values only
    except TierUnavailable:
        _delete_failed(tiers, dropped, l2_keys, message)
        return True
    finally:
        cluster.drop_local(dropped)
    cluster.reached(l2_keys)
    return found


def _negative_plan(tiers: AgentTiers, key: str, ttl_s: float | None) -> tuple[str, bytes, float, int, int] | None:
    """The marker's key, data, expiry, PX and the generation before it is sent; ``None`` for a TTL of 0."""
    ttl = tiers.config.negative_ttl_s if ttl_s is None else check_ttl(ttl_s)
    if ttl == 0:
        return None
    nkey = K.negative_key(key)
    expire_at = tiers.clock() + ttl
    data = tiers.cluster.codec.encode(True, expire_at, nkey)
    return nkey, data, expire_at, ttl_ms(ttl), tiers.cluster.generation


def _negative_sent(tiers: AgentTiers, nkey: str, data: bytes, expire_at: float, gen: int, failed: bool) -> None:
    if failed:
        # A mark only this process holds would answer "absent" after another process wrote the item.
        tiers.telemetry.l2_errors += 1
        tiers.telemetry.l2_write_failures += 1
        return
    tiers.node.l1.set(nkey, data, expire_at)
    if tiers.cluster.generation != gen:  # a write of the item (which clears the mark) raced with this one
        tiers.node.l1.pop(nkey)


def set_negative(tiers: AgentTiers, key: str, ttl_s: float | None) -> None:
    """Mark ``key`` known absent for ``ttl_s`` (default ``MW_TASK_TTL_NEGATIVE_S``) in L2 and this node's L1.

    Only after the store confirmed the absence; any write of the item clears the mark.
    """
    plan = _negative_plan(tiers, key, ttl_s)
    if plan is None:
        return
    nkey, data, expire_at, ms, gen = plan
    try:
        tiers.cluster.l2.set(nkey, data, ms)
    except TierUnavailable:
        _negative_sent(tiers, nkey, data, expire_at, gen, failed=True)
    else:
        _negative_sent(tiers, nkey, data, expire_at, gen, failed=False)


async def set_negative_async(tiers: AgentTiers, key: str, ttl_s: float | None) -> None:
    plan = _negative_plan(tiers, key, ttl_s)
    if plan is None:
        return
    nkey, data, expire_at, ms, gen = plan
    try:
        await tiers.cluster.l2.set_async(nkey, data, ms)
    except TierUnavailable:
        _negative_sent(tiers, nkey, data, expire_at, gen, failed=True)
    else:
        _negative_sent(tiers, nkey, data, expire_at, gen, failed=False)
