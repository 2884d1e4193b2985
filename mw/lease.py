"""The cluster-wide load lease: at most one process loads a missing key at a time.

Protocol (all keys in Redis, beside the value key ``K`` it guards):

1. **Acquire.** ``SET mw:lease:K <token> NX PX <ttl>``. The token is random per attempt; only the
   caller whose SET succeeded holds the lease. Everyone else is a waiter.
2. **Load and fill.** The holder runs the loader, then fills with one script that writes the value
   only if ``mw:lease:K`` still holds its token: ``SET K value PX ttl``, ``DEL mw:neg:K``,
   ``DEL mw:lease:K``, ``PUBLISH <landed channel> K`` (or, when the loader found nothing, the negative
   marker instead of the value). An invalidation deletes the lease key, so a value loaded *before*
   an invalidation is never written *after* it: the token no longer matches and the fill is refused
   (the stale-set race of "Scaling Memcache at Facebook", closed the same way, with the lease token).
3. **Release.** Whatever happens (loader error, refused fill), the holder deletes the lease only if
   it still holds the token; a lease that expired and was taken by another caller is left alone.
4. **Extend.** A loader slower than the lease keeps it alive: the holder re-arms ``PX`` every third
   of the lease while it holds the token. A holder that dies stops extending; its lease expires and
   a waiter takes over.
5. **Wait.** Waiters are woken by the landed message (pub/sub) and read the value; a short poll of
   the lease key bounds the wait when a message is lost or the holder died.

All compare-and-act steps are Lua scripts, so each is atomic and one round trip. With the embedded
fake Redis they run as plain commands under ``EMBEDDED_ATOMIC`` instead (same atomicity, a tenth of
the cost: fakeredis interprets Lua slowly). Scripts are :class:`LuaScript` constants (source and SHA-1)
run with ``EVALSHA`` on whichever client the call uses, so no client, sync or per loop, is held by them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from mw.tiers.l2 import LuaScript, RedisTier, pipeline

_RELEASE = LuaScript.of("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

_EXTEND = LuaScript.of("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""")

# KEYS: lease, target (value or negative key), other (the key to clear: negative or value)
# ARGV: token, data, ttl_ms, landed channel, logical key
_FILL = LuaScript.of("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[3], KEYS[1])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
""")


def new_token() -> bytes:
    return secrets.token_hex(12).encode()


class Leases:
    """Lease operations on one L2 tier (sync and asyncio)."""

    def __init__(self, l2: RedisTier, landed_channel: str) -> None:
        self.l2 = l2
        self.landed_channel = landed_channel

    def _cas(self, lease_key: str, token: bytes, act: Callable[[Any], object]) -> bool:
        """Embedded compare-and-act: run ``act(client)`` only while ``lease_key`` holds ``token``."""
        phys = self.l2.phys

        def run(client: Any) -> bool:
            with self.l2.atomic:
                if client.get(phys(lease_key)) != token:
                    return False
                act(client)
                return True

        return bool(self.l2._call("l2.script", (lease_key,), run))

    def _fill_embedded(
        self, lease_key: str, token: bytes, target: str, other: str, data: bytes, ttl_ms: int, key: str
    ) -> bool:
        phys = self.l2.phys

        def act(client: Any) -> None:
            pipe = pipeline(client, embedded=True)
            pipe.set(phys(target), data, px=ttl_ms)
            pipe.delete(phys(other), phys(lease_key))
            pipe.publish(self.l2.channel(self.landed_channel), key)
            pipe.execute()

        return self._cas(lease_key, token, act)

    # --- sync ------------------------------------------------------------------------------------------
    def acquire(self, lease_key: str, ttl_ms: int) -> bytes | None:
        token = new_token()
        return token if self.l2.set_nx(lease_key, token, ttl_ms) else None

    def release(self, lease_key: str, token: bytes) -> bool:
        self.l2._seen("delete", (lease_key,))
        if self.l2.embedded:
            return self._cas(lease_key, token, lambda c: c.delete(self.l2.phys(lease_key)))
        return bool(self.l2.run(_RELEASE, [lease_key], [token]))

    def extend(self, lease_key: str, token: bytes, ttl_ms: int) -> bool:
        if self.l2.embedded:
            return self._cas(lease_key, token, lambda c: c.pexpire(self.l2.phys(lease_key), ttl_ms))
        return bool(self.l2.run(_EXTEND, [lease_key], [token, ttl_ms]))

    def fill(self, lease_key: str, token: bytes, target: str, other: str, data: bytes, ttl_ms: int, key: str) -> bool:
        """Write ``data`` under ``target`` only while holding the lease; clears ``other``; wakes waiters."""
        self.l2._seen("write", (target,))
        self.l2._seen("delete", (other, lease_key))
        if self.l2.embedded:
            return self._fill_embedded(lease_key, token, target, other, data, ttl_ms, key)
        args = [token, data, ttl_ms, self.l2.channel(self.landed_channel), key]
        return bool(self.l2.run(_FILL, [lease_key, target, other], args))

    def holder(self, lease_key: str) -> bytes | None:
        return self.l2.get(lease_key)

    # --- async -----------------------------------------------------------------------------------------
    async def acquire_async(self, lease_key: str, ttl_ms: int) -> bytes | None:
        token = new_token()
        return token if await self.l2.set_nx_async(lease_key, token, ttl_ms) else None

    async def release_async(self, lease_key: str, token: bytes) -> bool:
        if self.l2.embedded:
            return self.release(lease_key, token)
        self.l2._seen("delete", (lease_key,))
        return bool(await self.l2.run_async(_RELEASE, [lease_key], [token]))

    async def extend_async(self, lease_key: str, token: bytes, ttl_ms: int) -> bool:
        if self.l2.embedded:
            return self.extend(lease_key, token, ttl_ms)
        return bool(await self.l2.run_async(_EXTEND, [lease_key], [token, ttl_ms]))

    async def fill_async(
        self, lease_key: str, token: bytes, target: str, other: str, data: bytes, ttl_ms: int, key: str
    ) -> bool:
        if self.l2.embedded:
            return self.fill(lease_key, token, target, other, data, ttl_ms, key)
        self.l2._seen("write", (target,))
        self.l2._seen("delete", (other, lease_key))
        args = [token, data, ttl_ms, self.l2.channel(self.landed_channel), key]
        return bool(await self.l2.run_async(_FILL, [lease_key, target, other], args))

    async def holder_async(self, lease_key: str) -> bytes | None:
        return await self.l2.get_async(lease_key)
