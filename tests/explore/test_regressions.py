"""Defects the explorer found, each pinned by a plain test (F2: stale single flight after a drop; F3: a
delete that left the negative marker; F5: a lease extended forever for a loop that is gone). F4 needs the
fault seam to refuse the lease: it is in ``test_regressions_seam.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mw import MwConfig, MwManager
from mw import keys as K

Make = Callable[..., MwManager]
KEY = K.global_typed_key("doc", "s", "1")


@pytest.mark.guard("F2 was a defect of the new single flight, found by the explorer; base got it right")
def test_f2_a_follower_after_a_delete_is_not_handed_the_load_that_started_before_it(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    leader = a.begin_load("doc", "s", "1")
    assert leader.state == "lead"  # it read the store before the delete below
    b.del_global_item_typed("doc", "s", "1")
    follower = b.begin_load("doc", "s", "1")
    a.finish_load(leader, "old")
    follower = b.poll_load(follower)
    assert follower.state == "lead", f"a read that began after the delete got {follower.state} {follower.value!r}"
    b.finish_load(follower, "new")
    assert a.get_item_typed("doc", "s", "1") == "new"


@pytest.mark.guard("F2 was a defect of the new single flight, found by the explorer; base got it right")
def test_f2_a_flush_forgets_every_load_in_flight(make_manager: Make) -> None:
    a, b = make_manager("a", pubsub=False), make_manager("b", node="n2", pubsub=False)
    elsewhere = make_manager("c", pubsub=False, lease_ttl_s=9.0)  # another cluster: another process
    assert elsewhere.cluster is not a.cluster
    leader = a.begin_load("doc", "s", "1")
    assert leader.state == "lead"
    elsewhere.del_global_item_typed("doc", "s", "1")  # its message is lost: the bus flushes instead
    a.cluster.flush_local()
    follower = b.begin_load("doc", "s", "1")
    a.finish_load(leader, "old")
    follower = b.poll_load(follower)
    assert follower.state == "lead", f"a read that began after the flush got {follower.state} {follower.value!r}"


def test_f3_a_delete_removes_the_negative_marker_too(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    assert a.get_or_load("doc", "s", "1", loader=lambda: None) is None
    assert a.l2.get(K.negative_key(KEY)) is not None, "the absence is remembered"
    assert a.del_global_item_typed("doc", "s", "1") is False, "no value was deleted, only a marker"
    assert a.l2.get(K.negative_key(KEY)) is None
    assert b.get_or_load("doc", "s", "1", loader=lambda: "inserted since") == "inserted since"


def test_f3_the_async_delete_removes_it_too_and_counts_only_values(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_negative_cache("doc", "s", "1", ttl_s=30)
    assert asyncio.run(a.del_global_item_typed_async("doc", "s", "1")) is False
    assert a.check_negative_cache("doc", "s", "1") is False
    a.set_global_item_typed("doc", "s", "1", "v")
    assert asyncio.run(a.del_global_item_typed_async("doc", "s", "1")) is True


@pytest.mark.parametrize(
    "backend",
    [
        "embedded",
        pytest.param("real", marks=pytest.mark.mw_real_servers),
    ],
)
def test_f5_a_holder_whose_loop_closed_stops_extending_its_lease(backend: str, base_config: MwConfig) -> None:
    """The caller closed its loop while its load ran: that load never ends, so its lease must lapse and a
    waiter take over (its extender kept re-arming the lease forever: every caller of the key timed out;
    on the code before issue 9 that caller waits on the dead loop's single flight forever instead)."""
    # MW_LOAD_TIMEOUT_S as a deployment sets it: the code before issue 9 ignores it and runs this test too.
    config = MwConfig.from_env(
        {"MW_LOAD_TIMEOUT_S": "4.0"}, namespace=base_config.namespace, redis_url=base_config.redis_url,
        mlt_dsn=base_config.mlt_dsn, lease_ttl_s=1.0,
    )  # fmt: skip
    # On the wall clock: the lease must lapse in real time, as on a real Redis (the embedded server's TTLs follow
    # the manager's clock, which a ManualClock would freeze).
    a = MwManager("a", config)
    b = MwManager("b", config, node="n2")
    try:
        _f5(a, b)
    finally:
        a.close()
        b.close()


def _f5(a: MwManager, b: MwManager) -> None:
    loop = asyncio.new_event_loop()
    started = asyncio.Event()

    async def never() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    call = loop.create_task(a.get_or_load_async("doc", "s", "1", loader=never))
    loop.run_until_complete(asyncio.wait_for(started.wait(), 10))
    assert not call.done() and a.l2.get(K.lease_key(KEY)) is not None, "the holder's load is running"
    # The loop's own Redis client goes first (closing a loop under an open socket is the test's leak, not
    # the runtime's); the stuck load stays.
    if a.l2.url is not None:  # a real server's socket
        loop.run_until_complete(a.l2.aclose())
    loop.close()  # without cancelling its tasks: the load is stuck on a loop that is gone
    assert b.get_or_load("doc", "s", "1", loader=lambda: "taken over") == "taken over"
