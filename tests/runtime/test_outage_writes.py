"""Writes and deletes made while L2 is unreachable, and the bus after the outage.

Behaviour only, on what the runtime had before issue 9 (``tools/against-base`` shows each failing there);
the pending-changes structure the replay uses is tested in ``test_pending_invalidations.py``.

Two clusters of one process stand for two processes: they share only L2 and the bus. An outage is a
disconnected embedded server (fakeredis keeps its data), ``CLIENT PAUSE WRITE`` on a real Redis (reads
work, writes time out and never land), or a real Redis killed and restarted on the same port (empty).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mw
from mw import ManualClock, MwConfig, MwManager
from mw import keys as K
from mw.invalidation import GAP_GRACE_S
from mw.tiers.l2 import embedded_server
from pytest_mw.servers.redis_proc import RedisProcess

K1 = K.global_typed_key("doc", "s", "1")
K2 = K.global_typed_key("doc", "s", "2")
K3 = K.global_typed_key("doc", "s", "3")


def _wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


class World:
    """Managers on one L2 that can be taken down and brought back."""

    def __init__(self, kind: str, config: MwConfig, raw: Any, server: RedisProcess | None = None) -> None:
        self.kind = kind
        self.config = config
        self.raw = raw
        self.server = server
        self.clock = ManualClock(start=1_800_000_000.0)
        self.managers: list[MwManager] = []

    def make(self, organ: str, **changes: Any) -> MwManager:
        m = MwManager(organ, self.config.replace(**changes) if changes else self.config, clock=self.clock)
        self.managers.append(m)
        return m

    def phys(self, key: str) -> str:
        return f"{self.config.namespace}:{key}"

    def down(self) -> None:
        if self.kind == "disconnect":
            embedded_server().connected = False
        elif self.kind == "pause":
            self.raw.client_pause(10_000, all=False)  # WRITE: reads go on, writes block and time out
        else:
            assert self.server is not None and self.server.port is not None
            self.port = self.server.port
            self.server.stop()

    def up(self) -> None:
        if self.kind == "disconnect":
            embedded_server().connected = True
        elif self.kind == "pause":
            self.raw.client_unpause()
        else:
            self.server = RedisProcess(port=self.port)
            self.server.start()

    def close(self) -> None:
        for m in self.managers:
            m.close()
        mw.close_all()


OUTAGES = [
    "disconnect",
    pytest.param("pause", marks=pytest.mark.mw_real_servers),
    pytest.param("restart", marks=pytest.mark.mw_real_servers),
]


def _world(request: pytest.FixtureRequest, kind: str) -> Iterator[World]:
    fast = {"redis_timeout_s": 0.2, "tier_retry_s": 0.1}
    server = None
    if kind == "disconnect":
        import fakeredis

        ns = f"t{uuid.uuid4().hex[:12]}"
        config = MwConfig.from_env({}, namespace=ns, **fast)
        raw: Any = fakeredis.FakeRedis(server=embedded_server())
    else:
        import redis

        dsn = str(request.getfixturevalue("mw_postgres_dsn"))
        if kind == "pause":  # the session's server (TLS with --mw-backend redis-tls); CLIENT PAUSE as its admin
            if request.getfixturevalue("real_l2_topology") == "cluster":
                pytest.skip(
                    "one standalone Redis only, not on redis-cluster: CLIENT PAUSE of the one server, and World reads "
                    "raw keys from it (a cluster spreads them over 3 primaries)"
                )
            # on a Sentinel group: the group's primary (the admin URL names it), through the sentinels
            l2 = request.getfixturevalue("real_l2_settings")
            admin = str(request.getfixturevalue("mw_redis_admin_url"))
            ns = request.getfixturevalue("mw_namespace")
        else:
            server = RedisProcess()
            server.start()
            l2, admin = {"redis_url": server.url}, server.url
            ns = f"t{uuid.uuid4().hex[:12]}"
        config = MwConfig.from_env({}, mlt_dsn=dsn, namespace=ns, **l2, **fast)
        raw = redis.Redis.from_url(admin, socket_timeout=5)
    world = World(kind, config, raw, server)
    try:
        yield world
    finally:
        if kind == "disconnect":
            embedded_server().connected = True
        elif kind == "pause":
            raw.client_unpause()
        world.close()
        if kind != "restart":
            keys = list(raw.scan_iter(match=f"{ns}:*"))
            if keys:
                raw.delete(*keys)
        raw.close()
        if world.server is not None:
            world.server.stop()


@pytest.fixture(params=OUTAGES)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from _world(request, request.param)


@pytest.fixture(params=[OUTAGES[0], OUTAGES[2]])
def dropping_world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Outages that drop the bus's subscription (a pause keeps it)."""
    yield from _world(request, request.param)


def _in_l2(world: World, m: MwManager, key: str) -> Any:
    data = world.raw.get(world.phys(key))
    return None if data is None else m.cluster.codec.decode(data)[0]


def test_a_write_and_a_delete_made_during_an_outage_leave_no_process_serving_stale(world: World) -> None:
    a = world.make("a")
    b = world.make("b", l1_max_items=4321)
    assert b.get_item_typed("doc", "s", "other") is None  # b subscribes before a publishes anything
    a.set_global_item_typed("doc", "s", "1", "old")
    a.set_global_item_typed("doc", "s", "2", "doomed")
    a.set_global_item_typed("doc", "s", "3", "doomed too")
    bus = b.cluster.bus
    assert bus is not None and _wait(lambda: bus.received >= 3)  # a drop while b fills would refuse the fill
    assert b.get_item_typed("doc", "s", "1") == "old" and b.get_item_typed("doc", "s", "2") == "doomed"
    assert b.get_item_typed("doc", "s", "3") == "doomed too"
    assert K1 in b.l0 and K2 in b.l0 and K3 in b.l0
    flushes = bus.flushes

    world.down()
    try:
        a.set_global_item_typed("doc", "s", "1", "new")
        assert a.del_global_key(K2) is True
        assert asyncio.run(a.del_global_item_typed_async("doc", "s", "3")) is True
        assert a.telemetry.l2_write_failures == 3
        for key in (K1, K2, K3):
            assert key not in a.l0 and a.l1.get(key) is None, "the writer's own copy is unknown: dropped"
    finally:
        world.up()

    def replayed() -> bool:
        return all(world.raw.get(world.phys(k)) is None for key in (K2, K3) for k in (key, K.lease_key(key)))

    assert _wait(replayed), "the deletes are replayed once L2 answers"
    assert _wait(lambda: b.get_item_typed("doc", "s", "2") is None), "the delete reached the other process"
    assert b.get_item_typed("doc", "s", "3") is None
    # The write is not replayed (a late replay could overwrite a newer write), but the old copy it could not
    # replace is deleted: nobody is served "old" after the outage (before this, every reader was, for its TTL).
    assert _wait(lambda: _in_l2(world, a, K1) is None), "the old copy the write missed is deleted"
    assert a.get_item_typed("doc", "s", "1") is None, "the writer serves neither what L2 never took nor the old"
    assert _wait(lambda: b.get_item_typed("doc", "s", "1") is None)
    if world.kind == "pause":  # the subscription stayed up: the replay stands for the messages lost
        time.sleep(GAP_GRACE_S + 0.3)
        assert bus.flushes == flushes, "no sequence gap, so no flush"


@pytest.mark.parametrize(
    "world",
    [
        OUTAGES[0],
        OUTAGES[1],
        pytest.param(
            "restart",
            marks=[
                pytest.mark.mw_real_servers,
                pytest.mark.guard("a restart drops the subscription: base flushed when it resubscribed, too"),
            ],
        ),
    ],
    indirect=True,
)
def test_too_many_changes_during_an_outage_make_other_processes_flush(world: World) -> None:
    a = world.make("a")
    b = world.make("b", l1_max_items=4321)
    assert b.get_item_typed("doc", "s", "other") is None
    a.set_global_item_typed("doc", "s", "1", "v")
    a.set_global_item_typed("doc", "s", "untouched", "u")
    bus = b.cluster.bus
    assert bus is not None and _wait(lambda: bus.received >= 2)
    assert b.get_item_typed("doc", "s", "1") == "v" and b.get_item_typed("doc", "s", "untouched") == "u"
    untouched = K.global_typed_key("doc", "s", "untouched")
    assert K1 in b.l0 and untouched in b.l0
    flushes = bus.flushes
    world.down()
    try:
        for i in range(1100):  # more keys than one replay lists
            a.set_global_item_typed("doc", "s", "1" if i == 0 else f"w{i}", i)
    finally:
        world.up()
    assert _wait(lambda: untouched not in b.l0 and K1 not in b.l0), "b flushed: a could not list every key"
    if world.kind == "pause":
        time.sleep(GAP_GRACE_S + 0.3)
        # The flush message covers the lost sequence numbers; on a very busy machine the subscription may
        # also time out once during the pause, which flushes again (correctly): not more than that.
        assert flushes + 1 <= bus.flushes <= flushes + 2, (flushes, bus.flushes)


class _Attempts(logging.Handler):
    """Counts one bus's failed subscription attempts (its thread logs each one)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(logging.DEBUG)
        self.thread_name = thread_name
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.threadName == self.thread_name and ("subscription to" in text or "still down" in text):
            self.count += 1


def test_the_bus_resubscribes_as_soon_as_commands_work_again(dropping_world: World) -> None:
    world = dropping_world
    a = world.make("a")
    b = world.make("b", l1_max_items=4321)
    a.set_global_item_typed("doc", "s", "1", "v0")
    assert b.get_item_typed("doc", "s", "1") == "v0"
    bus = b.cluster.bus
    assert bus is not None and bus.subscribed and bus._thread is not None
    attempts = _Attempts(bus._thread.name)
    logger = logging.getLogger("mw.invalidation")
    level = logger.level
    logger.addHandler(attempts)
    logger.setLevel(logging.DEBUG)
    try:
        world.down()
        try:
            assert b.get_item_typed("doc", "s", "other") is None  # b's commands fail: L2 is marked down
            # 7 failed attempts: the subscriber now backs off for its longest wait (2 s before this change).
            assert _wait(lambda: attempts.count >= 7, 30.0)
        finally:
            world.up()
        assert b.get_item_typed("doc", "s", "after") is None  # the first command that works again
        assert _wait(lambda: bus.subscribed, 1.0), "subscribed again once commands work, not after the backoff"
    finally:
        logger.removeHandler(attempts)
        logger.setLevel(level)
    a.set_global_item_typed("doc", "s", "1", "v1")
    assert _wait(lambda: b.get_item_typed("doc", "s", "1") == "v1")
    received = bus.received
    a.set_global_item_typed("doc", "s", "1", "v2")
    assert _wait(lambda: bus.received > received), "the invalidation arrives over the bus"
    assert b.get_item_typed("doc", "s", "1") == "v2"
