"""Writes and deletes reach every tier and every agent; write, read and delete share one key."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import pytest

from mw import ConfigError, MwManager, ValueTooLargeError
from mw import keys as K

Make = Callable[..., MwManager]


def test_typed_write_lands_in_every_tier_under_one_key(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("task", "by_id", "42", {"status": "running"}, ttl_s=30)
    key = "global:item:task:by_id:42"
    assert key in a.l0 and a.l1.get(key) is not None and a.l2.get(key) is not None
    assert 29_000 < a.l2.pttl(key) <= 30_000, "a real Redis TTL (PX)"
    assert a.l2.scan_keys("*") == [key]


def test_delete_from_another_agent_clears_every_tier_and_every_l0(make_manager: Make) -> None:
    a, b, c = make_manager("a"), make_manager("b"), make_manager("c", node="n2")
    a.set_global_item_typed("doc", "s", "1", "v1")
    for m in (a, b, c):
        assert m.get_item_typed("doc", "s", "1") == "v1"
    assert b.del_global_key("global:item:doc:s:1") is True
    key = K.global_typed_key("doc", "s", "1")
    for m in (a, b, c):
        assert key not in m.l0 and m.l1.get(key) is None
        assert m.get_item_typed("doc", "s", "1") is None
    assert a.l2.get(key) is None


def test_delete_by_bare_id_and_by_full_key_hit_the_same_key(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item("cfg:1", 1)
    a.set_global_item("global:item:cfg:2", 2)
    assert a.l2.scan_keys("*") and sorted(a.l2.scan_keys("*")) == ["global:item:cfg:1", "global:item:cfg:2"]
    assert a.del_global_key("cfg:1") and a.del_global_key("global:item:cfg:2")
    assert a.l2.scan_keys("*") == []


def test_async_delete_reaches_every_tier(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    a.set_global_item_typed("doc", "s", "1", "v")
    assert b.get_item_typed("doc", "s", "1") == "v"
    assert asyncio.run(a.del_global_key_async("global:item:doc:s:1")) is True
    assert b.get_item_typed("doc", "s", "1") is None and a.get_item_typed("doc", "s", "1") is None
    assert asyncio.run(a.del_global_item_typed_async("doc", "s", "1")) is False


def test_a_write_replaces_every_other_agents_copy(make_manager: Make) -> None:
    a, b, c = make_manager("a"), make_manager("b"), make_manager("c", node="n2")
    a.set_global_item_typed("doc", "s", "1", "old")
    assert b.get_item_typed("doc", "s", "1") == "old" and c.get_item_typed("doc", "s", "1") == "old"
    a.set_global_item_typed("doc", "s", "1", "new")
    assert b.get_item_typed("doc", "s", "1") == "new" and c.get_item_typed("doc", "s", "1") == "new"


def test_is_global_never_double_prefixes(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item("global:item:x", 1)
    assert a.get_item("global:item:x", is_global=True) == 1
    assert a.get_item("x") == 1
    assert all(K.DOUBLE_PREFIX not in k for k in a.l2.scan_keys("*"))


@pytest.mark.parametrize("kw", ["ttl", "ttl_s"])
def test_set_item_takes_no_ttl_and_stays_in_l0(make_manager: Make, kw: str) -> None:
    a = make_manager("a")
    with pytest.raises(TypeError, match="L0-only"):
        a.set_item("x", 1, **{kw: 5})
    a.set_item("x", 1)
    assert a.get_item("x") == 1
    assert a.l2.scan_keys("*") == [] and len(a.l1) == 0
    assert a.delete_organ_item("x") and a.get_item("x") is None


def test_zero_ttl_write_caches_nothing_and_drops_old_copies(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("doc", "s", "1", "v")
    a.set_global_item_typed("doc", "s", "1", "v2", ttl_s=0)
    assert a.l2.scan_keys("*") == [] and a.get_item_typed("doc", "s", "1") is None


@pytest.mark.parametrize("bad", [-1, float("nan"), "10", True])
def test_bad_ttl_is_named(make_manager: Make, bad: object) -> None:
    with pytest.raises(ConfigError, match="ttl_s"):
        make_manager("a").set_global_item_typed("doc", "s", "1", "v", ttl_s=bad)  # type: ignore[arg-type]


def test_too_large_value_is_refused_before_any_tier_is_touched(make_manager: Make) -> None:
    a = make_manager("a", max_value_bytes=200)
    with pytest.raises(ValueTooLargeError, match="global:item:doc:s:big"):
        a.set_global_item_typed("doc", "s", "big", os.urandom(2500).hex())
    assert a.l2.scan_keys("*") == [] and len(a.l0) == 0


def test_clear_empties_l0_and_logs(make_manager: Make, caplog: pytest.LogCaptureFixture) -> None:
    a = make_manager("a")
    a.set_item("x", 1)
    a.set_global_item("y", 2)
    with caplog.at_level(logging.INFO, logger="mw"):
        assert a.clear() == 2
    assert "Cleared L0 cache" in caplog.text and len(a.l0) == 0
    assert a.get_item("y") == 2, "shared tiers keep the global item"


def test_negative_cache_marks_and_any_write_clears(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    assert a.check_negative_cache("doc", "s", "1") is False
    a.set_negative_cache("doc", "s", "1", ttl_s=30)
    assert b.check_negative_cache("doc", "s", "1") is True and b.telemetry.negative_cache_hits == 1
    b.set_global_item_typed("doc", "s", "1", "exists now")
    assert a.l2.get(K.negative_key(K.global_typed_key("doc", "s", "1"))) is None


def test_try_set_inflight_is_atomic(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    assert a.try_set_inflight("global:item:doc:s:1", 5) is True
    assert b.try_set_inflight("global:item:doc:s:1", 5) is False
    assert 0 < a.l2.pttl(K.lease_key("global:item:doc:s:1")) <= 5000


def test_holder_index_follows_copies_through_eviction_expiry_and_clear(make_manager: Make, clock) -> None:
    agents = [make_manager(f"a{i}", l0_max_items=5) for i in range(20)]
    holders = agents[0].cluster.holders
    agents[0].set_global_item_typed("doc", "s", "shared", "v", ttl_s=10)
    for m in agents[:3]:
        assert m.get_item_typed("doc", "s", "shared") == "v"
    key = K.global_typed_key("doc", "s", "shared")
    assert holders._by_key[key] == {m.l0 for m in agents[:3]}
    for i in range(10):  # agent 1 churns: its copy is evicted and leaves the index
        agents[1].set_global_item_typed("doc", "s", f"churn{i}", i)
    assert agents[1].l0 not in holders._by_key.get(key, set())
    clock.advance(11)
    assert agents[2].get_item_typed("doc", "s", "shared") is None
    assert agents[2].l0 not in holders._by_key.get(key, set()), "an expired copy leaves the index"
    agents[0].clear()
    assert key not in holders._by_key
    agents[3].set_global_item_typed("doc", "s", "k", 1)
    agents[4].get_item_typed("doc", "s", "k")
    agents[5].del_global_key("global:item:doc:s:k")
    assert (
        K.global_typed_key("doc", "s", "k") not in agents[3].l0
        and K.global_typed_key("doc", "s", "k") not in agents[4].l0
    )


def test_an_agent_dropped_without_close_is_freed(make_manager: Make) -> None:
    import gc
    import weakref

    import mw

    keep = make_manager("keeper")
    keep.set_global_item_typed("doc", "s", "1", "v")
    m = mw.MwManager("dropped", keep.config, clock=keep.clock)
    assert m.get_item_typed("doc", "s", "1") == "v"
    l0_ref = weakref.ref(m.l0)
    del m
    gc.collect()
    assert l0_ref() is None, "the holder index must not keep a dropped agent's L0 alive"


def test_an_agent_dropped_after_every_kind_of_call_is_freed_without_a_gc_pass(make_manager: Make) -> None:
    """The facade's parts never refer back to it: dropping the last reference frees the agent at once."""
    import gc
    import weakref

    keep = make_manager("keeper")
    keep.set_global_item_typed("doc", "s", "1", "v")
    m = MwManager("dropped", keep.config, clock=keep.clock)
    assert m.get_item_typed("doc", "s", "1") == "v"
    assert m.get_or_load("doc", "s", "2", lambda: "loaded") == "loaded"
    assert asyncio.run(m.get_or_load_async("doc", "s", "3", lambda: "async")) == "async"
    assert m.get_many_typed("doc", "s", ["1", "2", "9"]) == {"1": "v", "2": "loaded"}
    assert m.try_set_inflight(K.global_typed_key("job", "claim", "1"), 30)
    m.set_item("scratch", 1)
    m.prewarm()
    m.memory_metrics()
    refs = [weakref.ref(m), weakref.ref(m.l0)]
    # Garbage others made goes first: redis-py 8's asyncio connection handshake keeps a caught ResponseError in a
    # cycle (exception, traceback, frame) whose frames' callers are ours, holding ``m`` until a collector pass
    # (Python 3.12, a real Redis 7). While ``m`` is referenced here, nothing it reaches is garbage: a cycle of our
    # own still keeps it after the ``del``.
    gc.collect()
    gc.disable()
    try:
        del m
        assert [r() is None for r in refs] == [True, True], "a reference cycle keeps a dropped agent"
    finally:
        gc.enable()
