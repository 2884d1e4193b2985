"""Defects the explorer found, each pinned by a plain test (F2: stale single flight after a drop; F3: a
delete that left the negative marker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mw import MwManager
from mw import keys as K

Make = Callable[..., MwManager]
KEY = K.global_typed_key("doc", "s", "1")


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
