"""L2 faults as a caller sees them: a bad key or argument never marks L2 down, server-state faults end
as the tier's error without a breaker where one is wrong, and no client leaks per event loop.

These tests use only what the runtime had before issue 9 (``RedisTier``, ``TierUnavailable``,
``Leases``, the managers): ``tools/against-base`` shows each failing there on an assertion. The new
classification (exact classes, counters) and the fault seam are tested in ``test_l2_seam.py``.

Server-state faults (BUSY, READONLY, NOPERM, NOAUTH, CLIENT PAUSE) run on throwaway redis-servers of
this module, never on the session's shared one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio
import redis.exceptions as rx
from liveclients import live_async_clients

from mw import MwConfig
from mw import keys as K
from mw.lease import Leases
from mw.manager import MwManager
from mw.tiers.l2 import RedisTier, TierUnavailable
from mw.tiers.topology import RedisTopology
from pytest_mw.servers import factories

own_redis = factories.redis_proc()
replica_redis = factories.redis_proc()

real_only = pytest.mark.mw_real_servers
MODES = ["sync", "async"]


def _ns() -> str:
    return f"l2f{uuid.uuid4().hex[:10]}"


def _run(t: Any, mode: str, op: str, *args: Any) -> Any:
    """``t.<op>(*args)``, or ``t.<op>_async(*args)`` in a fresh ``asyncio.run``."""
    if mode == "sync":
        return getattr(t, op)(*args)
    return asyncio.run(getattr(t, f"{op}_async")(*args))


def _error_of(fn: Callable[[], object]) -> BaseException | None:
    """What ``fn()`` raised (None if nothing), so that a wrong exception is an assertion failure, not an error."""
    try:
        fn()
    except Exception as exc:
        return exc
    return None


def _wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


# --- one bad key or argument: never the tier marked down -----------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_wrongtype_read_is_a_miss_and_a_delete_right_after_reaches_redis(
    tier: RedisTier, mode: str, caplog: pytest.LogCaptureFixture, l2_admin: Any
) -> None:
    l2_admin.hset(tier.phys("hash"), "field", "1")
    tier.client.set(tier.phys("other"), b"v")
    with caplog.at_level(logging.WARNING, logger="mw"):
        read = _error_of(lambda: _run(tier, mode, "get", "hash"))
    assert read is None, f"a WRONGTYPE read raised {read!r}"
    deleted = _error_of(lambda: _run(tier, mode, "delete", ["other"]))
    assert deleted is None and l2_admin.exists(tier.phys("other")) == 0, f"the delete failed: {deleted!r}"
    assert "'hash'" in caplog.text and "WRONGTYPE" in caplog.text
    assert tier.pttl("hash") == -1 and _run(tier, mode, "mget", ["hash", "other"]) == [None, None]


def test_manager_wrongtype_read_leaves_l2_up_for_the_next_delete(
    make_manager: Callable[..., MwManager], l2_admin: Any
) -> None:
    m = make_manager("a", tier_retry_s=60.0, pubsub=False)
    bad, other = K.global_typed_key("doc", "s", "1"), K.global_typed_key("doc", "s", "2")
    l2_admin.hset(m.l2.phys(bad), "field", "1")
    m.l2.client.set(m.l2.phys(other), b"anything")
    assert m.get_item_typed("doc", "s", "1") is None
    assert m.del_global_key(other) is True
    assert l2_admin.exists(m.l2.phys(other)) == 0, "the delete never reached Redis: L2 was marked down"


def test_a_delete_after_a_wrongtype_read_reaches_the_other_processes(
    make_manager: Callable[..., MwManager], l2_admin: Any
) -> None:
    """The report: the delete made in the "down" window never reached the bus, another process served the
    deleted value for its whole TTL. Two clusters stand for two processes: they share only L2 and the bus."""
    a = make_manager("a", tier_retry_s=60.0, real_clock=True)
    b = make_manager("b", tier_retry_s=60.0, real_clock=True, l1_max_items=4321)
    assert a.cluster is not b.cluster
    assert b.get_item_typed("doc", "s", "warm") is None  # b subscribes before a publishes anything
    a.set_global_item_typed("doc", "s", "2", "doomed")
    assert _wait(lambda: b.get_item_typed("doc", "s", "2") == "doomed")
    l2_admin.hset(a.l2.phys(K.global_typed_key("doc", "s", "1")), "field", "1")
    assert a.get_item_typed("doc", "s", "1") is None
    assert a.del_global_item_typed("doc", "s", "2") is True
    assert _wait(lambda: b.get_item_typed("doc", "s", "2") is None, 5.0), "b still serves the deleted value"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", ["set", "set_nx"])
def test_an_out_of_range_ttl_is_a_value_error_naming_the_key(tier: RedisTier, mode: str, op: str) -> None:
    refused = _error_of(lambda: _run(tier, mode, op, "big", b"v", 10**17 * 1000))
    assert isinstance(refused, ValueError), repr(refused)
    assert "'big'" in str(refused) and "out of range" in str(refused)
    written = _error_of(lambda: _run(tier, mode, op, "big", b"v", 60_000))
    assert written is None, f"the tier was marked down for one bad argument: {written!r}"
    assert tier.get("big") == b"v"


# --- real servers: each fault as the server gives it -----------------------------------------------------------
def _admin(url: str, **kwargs: Any) -> redis.Redis:
    kwargs.setdefault("socket_timeout", 5)
    return redis.Redis.from_url(url, **kwargs)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _with_user(url: str, user: str, password: str) -> str:
    host, port = _host_port(url)
    return f"redis://{user}:{password}@{host}:{port}/0"


def _until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def own_tier(own_redis: Any) -> Iterator[Callable[..., RedisTier]]:
    made: list[RedisTier] = []

    def make(url: str | None = None, **kwargs: Any) -> RedisTier:
        kwargs.setdefault("retry_s", 60.0)
        t = RedisTier(url or own_redis.url, namespace=_ns(), **kwargs)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def _busy_ping(admin: redis.Redis) -> bool:
    try:
        admin.ping()
    except rx.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def _ignore(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except rx.RedisError:
        return False
    return True


@real_only
def test_busy_script_is_unavailable_and_the_tier_serves_once_it_ends(
    own_redis: Any, own_tier: Callable[..., RedisTier]
) -> None:
    admin = _admin(own_redis.url)
    admin.config_set("busy-reply-threshold", 20)
    t = own_tier()
    t.set("k", b"v", 60_000)
    runner = threading.Thread(
        target=lambda: _ignore(lambda: _admin(own_redis.url, socket_timeout=None).eval("while true do end", 0))
    )
    runner.start()
    try:
        _until(lambda: _busy_ping(admin), "the script to make Redis busy")
        with pytest.raises(TierUnavailable, match="BUSY"):
            t.get("k")
        with pytest.raises(TierUnavailable):
            t.set("k", b"w", 60_000)
        with pytest.raises(TierUnavailable):
            asyncio.run(t.get_async("k"))
    finally:
        _until(lambda: _ignore(admin.script_kill) or not runner.is_alive(), "SCRIPT KILL")
        runner.join()
    served = _error_of(lambda: t.get("k"))
    assert served is None, f"marked down for a busy server: {served!r}"
    assert t.get("k") == b"v", "served as soon as the script ended"


@real_only
def test_a_replica_answers_readonly_the_tier_reconnects_without_a_breaker(
    own_redis: Any, replica_redis: Any, own_tier: Callable[..., RedisTier]
) -> None:
    replica = _admin(replica_redis.url)
    replica.replicaof(*_host_port(own_redis.url))
    try:
        _until(lambda: replica.info("replication").get("master_link_status") == "up", "the replica to sync")
        t = own_tier(replica_redis.url)
        before = t.client.client_id()
        with pytest.raises(TierUnavailable, match="SET"):
            t.set("k", b"v", 60_000)
        assert t.client.client_id() != before, "the pooled connection was not dropped"
        read = _error_of(lambda: t.get("k"))
        assert read is None, f"reads not served: marked down ({read!r})"
        with pytest.raises(TierUnavailable):
            asyncio.run(t.set_async("k", b"v", 60_000))
    finally:
        replica.replicaof("NO", "ONE")
    t.set("k", b"v", 60_000)
    assert t.get("k") == b"v"


@real_only
def test_noperm_names_the_command_and_is_logged_once_per_command(
    own_redis: Any, own_tier: Callable[..., RedisTier], caplog: pytest.LogCaptureFixture
) -> None:
    admin = _admin(own_redis.url)
    user = f"mw{uuid.uuid4().hex[:8]}"
    admin.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], commands=["-@all", "+get", "+ping"])
    try:
        t = own_tier(_with_user(own_redis.url, user, "pw"))
        with caplog.at_level(logging.ERROR, logger="mw"):
            for _ in range(2):
                with pytest.raises(TierUnavailable, match="refused SET") as raised:
                    t.set("k", b"v", 1000)
            with pytest.raises(TierUnavailable, match="refused DEL"):
                t.delete(["k"])
        assert "no permissions" in str(raised.value)
        read = _error_of(lambda: t.get("k"))
        assert read is None, f"the tier was marked down for a configuration error: {read!r}"
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2 and "SET" in errors[0] and "DEL" in errors[1], errors
    finally:
        admin.acl_deluser(user)


@real_only
def test_wrong_password_and_missing_auth_are_unavailable_not_a_breaker(
    own_redis: Any, own_tier: Callable[..., RedisTier]
) -> None:
    wrong = own_tier(_with_user(own_redis.url, "nobody", "not-the-password"))
    with pytest.raises(TierUnavailable):
        wrong.get("k")
    admin = _admin(own_redis.url, single_connection_client=True)
    admin.config_set("requirepass", "s3cret")
    unauthenticated = own_tier()
    try:
        with pytest.raises(TierUnavailable):
            unauthenticated.get("k")
    finally:
        admin.config_set("requirepass", "")
    served = _error_of(lambda: unauthenticated.get("k"))
    assert served is None, f"marked down for a configuration error, so still refused once fixed: {served!r}"


@real_only
@pytest.mark.guard("a timeout meant 'Redis down' on base too: the breaker opened and closed as it should")
def test_client_pause_is_unavailable_and_opens_the_breaker(own_redis: Any, own_tier: Callable[..., RedisTier]) -> None:
    t = own_tier(timeout_s=0.2, retry_s=0.1)
    t.set("k", b"v", 60_000)
    _admin(own_redis.url).client_pause(1500)
    with pytest.raises(TierUnavailable) as raised:
        t.get("k")
    assert type(raised.value) is TierUnavailable and "Timeout" in str(raised.value)
    with pytest.raises(TierUnavailable, match="marked down"):
        t.get("k")

    def served() -> bool:
        try:
            return t.get("k") == b"v"
        except TierUnavailable:
            return False

    _until(served, "the pause to end")


# --- no client leak per event loop -----------------------------------------------------------------------------
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_four_hundred_event_loops_leave_no_clients_sockets_or_warnings(
    tier: RedisTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = Leases(tier, "landed")
    tier.set("k", b"v", 60_000)
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(f"{u.exc_value!r} in {u.object!r}"))

    async def one(i: int) -> None:
        assert await tier.get_async("k") == b"v"
        assert await tier.mget_async(["k", "missing"]) == [b"v", None]
        token = await leases.acquire_async(f"lease:{i}", 5000)
        assert token is not None and await leases.release_async(f"lease:{i}", token)

    gc.collect()
    fds, clients = _fds(), live_async_clients()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for i in range(400):
            asyncio.run(one(i))
        gc.collect()
    assert _fds() - fds < 10, f"{_fds() - fds} more open fds after 400 event loops"
    assert live_async_clients() - clients < 10, f"{live_async_clients() - clients} more clients after 400 loops"
    assert unraisable == []


def test_a_loop_closed_without_shutdown_is_forgotten_at_the_next_lookup(tier: RedisTier) -> None:
    tier.set("k", b"v", 60_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # their sockets can no longer close on their loops
        gc.collect()
        clients = live_async_clients()
        for _ in range(10):
            loop = asyncio.new_event_loop()
            assert loop.run_until_complete(tier.get_async("k")) == b"v"
            loop.close()
        gc.collect()
        assert live_async_clients() - clients <= 1, "one client kept per closed loop"
        tier.close()
        gc.collect()
    assert live_async_clients() == clients


@pytest.mark.parametrize("backend", [pytest.param("real", marks=pytest.mark.mw_real_servers)])
def test_a_tier_closed_and_dropped_while_its_loop_is_idle_closes_its_client_when_the_loop_ends(
    l2_settings: dict[str, Any], mw_namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-asyncio's module-scoped loop is idle between tests: a tier used on it, then closed and collected there
    (a function-scoped ``mw``), closes its client on that loop when the loop shuts down. Its closer was collected
    with it, and asyncio ran that close as a task the shutdown left pending, the socket unclosed."""
    config = MwConfig.from_env({}, namespace=mw_namespace, **l2_settings)
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(f"{u.exc_value!r} in {u.object!r}"))
    gc.collect()
    clients = live_async_clients()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop = asyncio.new_event_loop()  # shut down as asyncio.Runner does (3.11+): its async generators, then close
        try:
            t = RedisTier(config.redis_url, namespace=config.namespace, topology=RedisTopology.of(config))
            t.set("k", b"v", 60_000)
            assert loop.run_until_complete(t.get_async("k")) == b"v"
            t.close()  # the loop is idle: nothing can run on it now
            del t
            gc.collect()
            loop.run_until_complete(asyncio.sleep(0))  # the next test on the same loop
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        gc.collect()
    assert [r.getMessage() for r in caplog.records if "pending" in r.getMessage()] == []
    assert [str(w.message) for w in caught if "unclosed" in str(w.message).lower()] == []
    assert unraisable == []
    assert live_async_clients() == clients


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("embedded", marks=pytest.mark.guard("fakeredis has no socket to leave unclosed: [real] shows it")),
        pytest.param("real", marks=pytest.mark.mw_real_servers),
    ],
)
def test_close_closes_the_client_of_a_loop_running_in_another_thread(tier: RedisTier) -> None:
    gc.collect()
    clients = live_async_clients()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            asyncio.run_coroutine_threadsafe(tier.get_async("k"), loop).result(timeout=10)
            tier.close()
            _until(lambda: gc.collect() >= 0 and live_async_clients() == clients, "the loop to close its client")
        finally:
            loop.call_soon_threadsafe(loop.stop)
            runner.join()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        gc.collect()
    assert [str(w.message) for w in caught if "unclosed" in str(w.message).lower()] == []
