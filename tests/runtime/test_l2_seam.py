"""The L2 classification and fault seam issue 9 adds: exact classes, counters, and the seam's points.

New API: these tests name what the base does not have (``mw.faults``, ``TierBusy``, ``L2CommandError``,
counters), so ``tools/against-base`` reports them apart (``new_api``). The behaviour each class stands
for (never marked down, a delete reaching Redis) is shown failing on base by ``test_l2_faults.py``.
Faults a single server cannot show (LOADING, TRYAGAIN, MOVED, ASK) are injected as the exceptions
redis-py raises for them, through the seam.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions as rx
from liveclients import live_async_clients
from test_l2_faults import _error_of, _run

from mw import faults
from mw import keys as K
from mw.errors import L2CommandError, TierBusy, TierPermissionError, TierUnavailable, TopologyChanged
from mw.lease import Leases
from mw.manager import MwManager
from mw.tiers.l2 import RedisTier
from pytest_mw.servers import factories

pytestmark = pytest.mark.new_api
own_redis = factories.redis_proc()

real_only = pytest.mark.mw_real_servers
MODES = ["sync", "async"]


def _ns() -> str:
    return f"l2s{uuid.uuid4().hex[:10]}"


def _inject(name: str, action: faults.Action, calls: list[str] | None = None) -> faults.Injector:
    def injector(point: str, key: str | None) -> faults.Action | None:
        if calls is not None:
            calls.append(point)
        return action if point == name else None

    return injector


def _node_admin(l2_admin: Any, tier: RedisTier, key: str) -> Any:
    """A plain admin client of the node holding ``key``: CLIENT LIST/ID are per node (on a cluster, its owner)."""
    if not tier.slotted:
        return l2_admin
    node = l2_admin.get_node_from_key(tier.phys(key))
    return redis.Redis(host=node.host, port=node.port)


# --- classification ------------------------------------------------------------------------------------------
INJECTED = [
    pytest.param(rx.BusyLoadingError("Redis is loading the dataset in memory"), TierBusy, id="LOADING"),
    pytest.param(rx.ResponseError("BUSY Redis is busy running a script."), TierBusy, id="BUSY"),
    pytest.param(rx.TryAgainError("Multiple keys request during rehashing of slot"), TierBusy, id="TRYAGAIN"),
    pytest.param(rx.ReadOnlyError("You can't write against a read only replica."), TopologyChanged, id="READONLY"),
    pytest.param(rx.MovedError("3999 127.0.0.1:6381"), TopologyChanged, id="MOVED"),
    pytest.param(rx.AskError("3999 127.0.0.1:6381"), TopologyChanged, id="ASK"),
    pytest.param(
        rx.NoPermissionError("this user has no permissions to run the 'get' command"), TierPermissionError, id="NOPERM"
    ),
    pytest.param(
        rx.AuthenticationError("invalid username-password pair or user is disabled."),
        TierPermissionError,
        id="WRONGPASS",
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("error", "expected"), INJECTED)
def test_injected_replies_are_classified_and_never_open_the_breaker(
    tier: RedisTier, mode: str, error: Exception, expected: type[TierUnavailable]
) -> None:
    tier.client.set(tier.phys("k"), b"v")
    with faults.injected(_inject("l2.get", faults.Fail(error))), pytest.raises(expected) as raised:
        _run(tier, mode, "get", "k")
    assert type(raised.value) is expected, f"{type(raised.value).__name__} for {error!r}"
    assert "GET" in str(raised.value) and "'k'" in str(raised.value)
    assert not faults.INJECTORS
    assert _run(tier, mode, "get", "k") == b"v", "the tier was marked down for an instant reply"


@pytest.mark.parametrize("mode", MODES)
def test_a_busy_read_is_retried_once_and_a_busy_write_is_not(tier: RedisTier, mode: str) -> None:
    busy = faults.Fail(rx.ResponseError("BUSY Redis is busy running a script."))
    calls: list[str] = []
    with faults.injected(_inject("l2.get", busy, calls)), pytest.raises(TierBusy):
        _run(tier, mode, "get", "k")
    assert calls.count("l2.get") == 2
    calls.clear()
    with faults.injected(_inject("l2.set_nx", busy, calls)), pytest.raises(TierBusy):
        _run(tier, mode, "set_nx", "k", b"v", 1000)
    assert calls.count("l2.set_nx") == 1
    assert tier.busy_errors == 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "error",
    [rx.ConnectionError("Error 104 while writing to socket. Connection reset by peer."), rx.TimeoutError("Timeout")],
    ids=["reset", "timeout"],
)
def test_an_injected_connection_failure_marks_the_tier_down(tier: RedisTier, mode: str, error: Exception) -> None:
    calls: list[str] = []
    with faults.injected(_inject("l2.get", faults.Fail(error), calls)):
        with pytest.raises(TierUnavailable) as first:
            _run(tier, mode, "get", "k")
        assert type(first.value) is TierUnavailable
        with pytest.raises(TierUnavailable, match="marked down"):
            _run(tier, mode, "get", "k")
    assert calls == ["l2.get"], "the second call was skipped without a round trip"


# --- counters and classes of the behaviours test_l2_faults.py shows ---------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_wrongtype_read_is_counted_as_a_key_error(
    tier: RedisTier, mode: str, caplog: pytest.LogCaptureFixture, l2_admin: Any
) -> None:
    l2_admin.hset(tier.phys("hash"), "field", "1")
    with caplog.at_level(logging.WARNING, logger="mw"):
        assert _run(tier, mode, "get", "hash") is None
    assert tier.key_errors == 1


def test_manager_counts_a_wrongtype_read_as_a_key_error_not_a_write_failure(
    make_manager: Callable[..., MwManager], l2_admin: Any
) -> None:
    m = make_manager("a", tier_retry_s=60.0, pubsub=False)
    bad, other = K.global_typed_key("doc", "s", "1"), K.global_typed_key("doc", "s", "2")
    l2_admin.hset(m.l2.phys(bad), "field", "1")
    m.l2.client.set(m.l2.phys(other), b"anything")
    assert m.get_item_typed("doc", "s", "1") is None
    assert m.del_global_key(other) is True
    assert m.telemetry.l2_write_failures == 0 and m.l2.key_errors == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", ["set", "set_nx"])
def test_an_out_of_range_ttl_is_an_l2_command_error_and_counted(tier: RedisTier, mode: str, op: str) -> None:
    refused = _error_of(lambda: _run(tier, mode, op, "big", b"v", 10**17 * 1000))
    assert isinstance(refused, L2CommandError) and isinstance(refused, ValueError), repr(refused)
    _run(tier, mode, op, "big", b"v", 60_000)
    assert tier.key_errors == 1


COUNTED = [
    pytest.param(rx.ResponseError("BUSY Redis is busy running a script."), "busy_errors", 2, id="BUSY"),
    pytest.param(
        rx.ReadOnlyError("You can't write against a read only replica."), "topology_changes", 1, id="READONLY"
    ),
    pytest.param(rx.NoPermissionError("no permissions to run the 'get' command"), "permission_errors", 1, id="NOPERM"),
    pytest.param(rx.AuthenticationError("invalid username-password pair"), "permission_errors", 1, id="WRONGPASS"),
]


@pytest.mark.parametrize(("error", "counter", "per_read"), COUNTED)
def test_classified_replies_are_counted_by_kind(tier: RedisTier, error: Exception, counter: str, per_read: int) -> None:
    """The counts test_l2_faults.py's real-server tests gave (a busy read is tried twice)."""
    with faults.injected(_inject("l2.get", faults.Fail(error))), pytest.raises(TierUnavailable):
        tier.get("k")
    assert getattr(tier, counter) == per_read


@real_only
def test_recovery_after_a_pause_is_announced_once(own_redis: Any) -> None:
    t = RedisTier(own_redis.url, namespace=_ns(), timeout_s=0.2, retry_s=0.1)
    try:
        t.set("k", b"v", 60_000)
        recovered: list[bool] = []
        t.on_recovered.append(lambda: recovered.append(True))
        redis.Redis.from_url(own_redis.url, socket_timeout=5).client_pause(1500)
        with pytest.raises(TierUnavailable):
            t.get("k")
        deadline = time.monotonic() + 10
        while _error_of(lambda: t.get("k")) is not None:
            assert time.monotonic() < deadline, "timed out waiting for the pause to end"
            time.sleep(0.01)
        assert recovered == [True]
    finally:
        t.close()


def test_loop_clients_counts_the_live_per_loop_clients(tier: RedisTier) -> None:
    for _ in range(20):
        asyncio.run(tier.get_async("k"))
    gc.collect()
    assert tier.loop_clients < 10


# --- the fault seam --------------------------------------------------------------------------------------------
SYNC_POINTS = ["l2.get", "l2.mget", "l2.set", "l2.set_nx", "l2.delete", "l2.publish", "l2.pttl", "l2.scan"]


def test_every_l2_call_passes_its_point_and_its_reply_point(tier: RedisTier) -> None:
    seen: list[tuple[str, str | None]] = []

    def record(point: str, key: str | None) -> None:
        seen.append((point, key))

    with faults.injected(record):
        tier.get("a")
        tier.mget(["a", "b"])
        tier.set("a", b"v", 1000)
        tier.set_nx("b", b"v", 1000)
        tier.delete(["a", "b"])
        tier.publish("chan", b"m")
        tier.pttl("a")
        tier.scan_keys("*")
    keys = ["a", "a", "a", "b", "a", "chan", "a", "*"]
    assert seen == [(name, key) for op, key in zip(SYNC_POINTS, keys, strict=True) for name in (op, f"{op}.reply")]


@pytest.mark.parametrize("mode", MODES)
def test_lease_steps_pass_the_script_point(tier: RedisTier, mode: str) -> None:
    leases = Leases(tier, "landed")
    seen: list[str] = []
    with faults.injected(lambda point, key: seen.append(point) and None):
        token = _run(leases, mode, "acquire", "lease:k", 5000)
        assert token is not None
        assert _run(leases, mode, "release", "lease:k", token) is True
    assert seen == ["l2.set_nx", "l2.set_nx.reply", "l2.script", "l2.script.reply"]


def test_async_calls_pass_the_same_points(tier: RedisTier) -> None:
    seen: list[str] = []

    async def calls() -> None:
        await tier.get_async("a")
        await tier.mget_async(["a"])
        await tier.set_async("a", b"v", 1000)
        await tier.set_nx_async("b", b"v", 1000)
        await tier.delete_async(["a"])

    with faults.injected(lambda point, key: seen.append(point) and None):
        asyncio.run(calls())
    ops = ["l2.get", "l2.mget", "l2.set", "l2.set_nx", "l2.delete"]
    assert seen == [name for op in ops for name in (op, f"{op}.reply")]


@pytest.mark.parametrize("mode", MODES)
def test_delay_waits_before_the_command(tier: RedisTier, mode: str) -> None:
    tier.set("k", b"v", 60_000)
    started = time.monotonic()
    with faults.injected(_inject("l2.get", faults.Delay(0.05))):
        assert _run(tier, mode, "get", "k") == b"v"
    assert time.monotonic() - started >= 0.05


@pytest.mark.parametrize("mode", MODES)
def test_act_runs_before_the_command_and_reply_after_it(tier: RedisTier, mode: str) -> None:
    phys = tier.phys("k")
    with faults.injected(_inject("l2.get", faults.Act(lambda: tier.client.set(phys, b"written by the act")))):
        assert _run(tier, mode, "get", "k") == b"written by the act"
    seen: list[bytes | None] = []
    with faults.injected(_inject("l2.set_nx.reply", faults.Act(lambda: seen.append(tier.client.get(phys))))):
        tier.client.delete(phys)
        assert _run(tier, mode, "set_nx", "k", b"new", 60_000) is True
    assert seen == [b"new"]


@pytest.mark.parametrize("mode", MODES)
def test_a_lost_reply_fails_the_call_although_the_write_landed(tier: RedisTier, mode: str) -> None:
    lost = faults.Fail(rx.ConnectionError("Connection reset by peer"))
    with faults.injected(_inject("l2.set.reply", lost)), pytest.raises(TierUnavailable):
        _run(tier, mode, "set", "k", b"landed", 60_000)
    assert tier.client.get(tier.phys("k")) == b"landed"


def test_drop_closes_the_pooled_connection(tier: RedisTier, l2_admin: Any) -> None:
    tier.set("k", b"v", 60_000)
    t = RedisTier(tier.url, namespace=tier.prefix.rstrip(":"), retry_s=0.0, topology=tier.topology)
    admin = _node_admin(l2_admin, tier, "k")

    def connections() -> set[int]:  # the server's, seen by an admin (the runtime's user may not run CLIENT)
        return {int(c["id"]) for c in admin.client_list()} - {int(admin.client_id())}

    try:
        t.get("k")
        before = set() if t.embedded else connections()
        with faults.injected(_inject("l2.get", faults.Drop())), pytest.raises(TierUnavailable, match="dropped"):
            t.get("k")
        assert t.get("k") == b"v"
        if not t.embedded:
            assert connections() - before, "the connection survived the drop (no new one was opened)"
    finally:
        t.close()
        if admin is not l2_admin:
            admin.close()


@real_only
@pytest.mark.parametrize("backend", ["real"], indirect=True)
def test_async_drop_closes_the_loops_connection(tier: RedisTier, l2_admin: Any) -> None:
    t = RedisTier(tier.url, namespace=tier.prefix.rstrip(":"), retry_s=0.0, topology=tier.topology)
    admin = _node_admin(l2_admin, tier, "k")

    def connections() -> set[int]:  # seen by an admin: the runtime's user may not run CLIENT (redis-tls)
        return {int(c["id"]) for c in admin.client_list()} - {int(admin.client_id())}

    async def scenario() -> tuple[set[int], set[int]]:
        assert await t.get_async("k") is None
        before = connections()
        with faults.injected(_inject("l2.get", faults.Drop())), pytest.raises(TierUnavailable, match="dropped"):
            await t.get_async("k")
        assert await t.get_async("k") is None
        return before, connections()

    try:
        before, after = asyncio.run(scenario())
    finally:
        t.close()
        if admin is not l2_admin:
            admin.close()
    assert after - before, "the loop's connection survived the drop (no new one was opened)"


def test_aclose_closes_the_running_loops_client_now(tier: RedisTier) -> None:
    async def scenario() -> int:
        await tier.get_async("k")
        gc.collect()
        opened = live_async_clients()
        await tier.aclose()
        gc.collect()
        return opened - live_async_clients()

    assert asyncio.run(scenario()) == 1, "aclose() did not release the loop's client"
