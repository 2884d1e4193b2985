"""In-flight claims (``try_set_inflight``/``release_inflight``): the cluster lease, held by hand.

The origin system's callers claim a key before doing the work themselves. A claim is the same lease
``get_or_load`` takes (:mod:`mw.lease`); this keeps the tokens, so a manager releases only its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mw import keys as K
from mw.errors import TierUnavailable
from mw.ttl import check_ttl
from mw.writes import ttl_ms

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers

SWEEP_AT = 1024
"""Claims held at once before expired ones are swept from the map."""


class Claims:
    """The claims one agent holds: ``key -> (token, monotonic expiry)``."""

    def __init__(self, tiers: AgentTiers) -> None:
        self._tiers = tiers
        self._held: dict[str, tuple[bytes, float]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def _prepare(self, key: str, ttl_s: float) -> tuple[str, float]:
        """The lease key and TTL of a claim (validated), after sweeping expired claims from a full map."""
        ttl = check_ttl(ttl_s)
        lkey = K.lease_key(K.check_full_key(key))
        if len(self._held) >= SWEEP_AT:
            now = time.monotonic()
            self._held = {k: c for k, c in self._held.items() if c[1] > now}
        return lkey, ttl

    def _claimed(self, key: str, token: bytes | None, ttl: float) -> bool:
        if token is not None:
            self._held[key] = (token, time.monotonic() + ttl)
        return token is not None

    def claim(self, key: str, ttl_s: float) -> bool:
        """True only for the one caller cluster-wide that got ``key`` for ``ttl_s``."""
        lkey, ttl = self._prepare(key, ttl_s)
        try:
            token = self._tiers.cluster.leases.acquire(lkey, ttl_ms(ttl))
        except TierUnavailable:
            self._tiers.telemetry.l2_errors += 1
            return False
        return self._claimed(key, token, ttl)

    async def claim_async(self, key: str, ttl_s: float) -> bool:
        lkey, ttl = self._prepare(key, ttl_s)
        try:
            token = await self._tiers.cluster.leases.acquire_async(lkey, ttl_ms(ttl))
        except TierUnavailable:
            self._tiers.telemetry.l2_errors += 1
            return False
        return self._claimed(key, token, ttl)

    def release(self, key: str) -> bool:
        """Release a claim this agent holds (never someone else's)."""
        claim = self._held.pop(key, None)
        if claim is None:
            return False
        try:
            return self._tiers.cluster.leases.release(K.lease_key(key), claim[0])
        except TierUnavailable:
            self._tiers.telemetry.l2_errors += 1
            return False

    async def release_async(self, key: str) -> bool:
        claim = self._held.pop(key, None)
        if claim is None:
            return False
        try:
            return await self._tiers.cluster.leases.release_async(K.lease_key(key), claim[0])
        except TierUnavailable:
            self._tiers.telemetry.l2_errors += 1
            return False
