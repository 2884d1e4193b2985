"""What the tests count to see that no per-event-loop L2 client outlives its loop."""

from __future__ import annotations

import gc

import redis


def live_async_clients() -> int:
    """Live per-loop clients (asyncio ``Redis`` or ``RedisCluster``); a Sentinel's own clients of its sentinels are
    part of the one loop client that made them, not counted."""
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import Sentinel

    # By type, not isinstance: isinstance on a weak proxy whose referent died raises ReferenceError (a CI run's).
    objects = [o for o in gc.get_objects() if issubclass(type(o), (Sentinel, redis.asyncio.Redis, RedisCluster))]
    helpers = {id(client) for o in objects if isinstance(o, Sentinel) for client in o.sentinels}
    return sum(not isinstance(o, Sentinel) and id(o) not in helpers for o in objects)
