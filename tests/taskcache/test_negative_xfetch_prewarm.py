"""Negative cache only after a confirmed absence; early refresh of hot keys; prewarming hot items."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable

import pytest

from mw import ManualClock, MwConfig, MwManager
from mw import keys as K
from mw.errors import ConfigError
from mw.refresh import jittered, xfetch_due

Make = Callable[..., MwManager]


def test_negative_entry_only_after_the_loader_confirms_absence(make_manager: Make) -> None:
    """Origin defect 2: any miss set a cluster-wide 'absent' marker without asking the database."""
    a, b = make_manager("a"), make_manager("b", node="n2")
    key = K.global_typed_key("doc", "s", "ghost")
    assert a.get_item("doc:s:ghost") is None
    assert a.l2.get(K.negative_key(key)) is None, "a miss that asked nobody marks nothing absent"
    calls = []
    assert a.get_or_load("doc", "s", "ghost", loader=lambda: calls.append(1)) is None
    assert 29_000 < a.l2.pttl(K.negative_key(key)) <= 30_000, "MW_TASK_TTL_NEGATIVE_S"
    assert b.get_or_load("doc", "s", "ghost", loader=lambda: calls.append(1)) is None
    assert len(calls) == 1 and b.telemetry.negative_cache_hits == 1
    a.set_global_item_typed("doc", "s", "ghost", "exists")
    assert a.l2.get(K.negative_key(key)) is None, "any write of the key clears it"
    assert b.get_or_load("doc", "s", "ghost", loader=lambda: "never") == "exists"


def test_task_negative_entry_cleared_by_caching_the_row(make_manager: Make) -> None:
    a = make_manager("a")
    assert a.get_task("late") is None and a.get_task("late") is None
    assert a.telemetry.negative_cache_hits == 1 and a.mlt.queries == 1
    a.mlt.put_task({"id": "late", "status": "queued"})
    a.cache_task_row({"id": "late", "status": "queued"})
    assert a.get_task("late")["status"] == "queued"
    a.invalidate_task("late")
    assert a.l2.get(K.negative_key(K.task_key("late"))) is None


def test_negative_cache_can_be_switched_off(make_manager: Make) -> None:
    a = make_manager("a", negative_cache=False)
    calls = []
    for _ in range(3):
        assert a.get_or_load("doc", "s", "none", loader=lambda: calls.append(1)) is None
    assert len(calls) == 3 and a.telemetry.negative_cache_hits == 0


def test_xfetch_decision() -> None:
    assert not xfetch_due(100.0, None, 1.0, 1.0, lambda: 0.5)
    assert not xfetch_due(100.0, 110.0, 0.0, 1.0, lambda: 0.5), "no load time known: never early"
    assert not xfetch_due(100.0, 110.0, 1.0, 1.0, lambda: 0.5), "10 s left, 0.69 s of headroom"
    assert xfetch_due(109.5, 110.0, 1.0, 1.0, lambda: 0.5)
    assert xfetch_due(100.0, 110.0, 1.0, 1.0, lambda: 1e-9), "rare draws refresh far ahead"
    rng = random.Random(7)
    early = sum(xfetch_due(105.0, 110.0, 1.0, 1.0, rng.random) for _ in range(10_000)) / 10_000
    assert 0.005 < early < 0.01, "P = exp(-5) at 5 s left with delta = 1 s"


def test_jitter_bounds() -> None:
    rng = random.Random(3)
    values = [jittered(100.0, 0.1, rng.random) for _ in range(1000)]
    assert min(values) >= 90.0 and max(values) <= 100.0 and max(values) - min(values) > 8


def test_hot_key_is_refreshed_early_by_one_caller(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", xfetch_beta=1000.0, ttl_jitter=0.0, rng_seed=11)
    calls = []

    def load() -> int:
        import time

        time.sleep(0.02)
        calls.append(1)
        return len(calls)

    assert a.get_or_load("doc", "s", "hot", loader=load, ttl_s=60) == 1
    clock.advance(59)
    values = {a.get_or_load("doc", "s", "hot", loader=load, ttl_s=60) for _ in range(5)}
    assert len(calls) == 2, "one early refresh before expiry, not one per caller"
    assert values <= {1, 2} and a.telemetry.early_refreshes == 1
    assert a.l0.expire_at(K.global_typed_key("doc", "s", "hot")) == pytest.approx(clock() + 60)


def test_an_early_refresh_that_fails_serves_the_cached_value(make_manager: Make, clock: ManualClock) -> None:
    """A hit XFetch refreshes early is still valid: a refresh whose loader raises serves it (every driver)."""
    a = make_manager("a", xfetch_beta=1000.0, ttl_jitter=0.0, rng_seed=11)
    key = K.global_typed_key("doc", "s", "hot")

    def slow_once() -> str:
        import time

        time.sleep(0.02)  # a known load time, so XFetch has a delta to refresh ahead of
        return "v1"

    def down() -> str:
        raise ConnectionError("Mlt down (injected)")

    assert a.get_or_load("doc", "s", "hot", loader=slow_once, ttl_s=60) == "v1"
    clock.advance(59.9)
    assert a.get_or_load("doc", "s", "hot", loader=down, ttl_s=60) == "v1"
    assert asyncio.run(a.get_or_load_async("doc", "s", "hot", loader=down, ttl_s=60)) == "v1"
    plan = a.begin_get_or_load("doc", "s", "hot", ttl_s=60)
    assert plan.state == "lead", "the refresh is due: a lead plan"
    a.fail_load(plan, ConnectionError("Mlt down (injected)"))
    assert (plan.state, plan.value) == ("hit", "v1")
    assert a.l0.get(key) == "v1" and a.telemetry.early_refreshes == 0
    assert a.l2.get(K.lease_key(key)) is None, "every failed refresh released its lease"
    clock.advance(0.2)
    assert a.get_or_load("doc", "s", "hot", loader=lambda: "v2", ttl_s=60) == "v2", "expired: loaded again"


def test_prewarm_loads_hot_items_missing_here(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", l1_ttl_s=30)
    a.mlt.put_item("doc", "s", "h1", "one")
    a.mlt.put_item("doc", "s", "h2", "two")
    a.mlt.put_task({"id": "t9", "status": "completed"})
    for _ in range(3):
        a.get_item_typed("doc", "s", "h1")
        a.get_item_typed("doc", "s", "h2")
        a.get_task("t9")
    a.get_item_typed("doc", "s", "cold")
    a.del_global_key(K.global_typed_key("doc", "s", "h1"))
    a.invalidate_task("t9")
    clock.advance(29)  # h2's L1 copy is near its expiry
    q0 = a.mlt.queries
    assert a.prewarm(top_n=10) == 3
    assert a.mlt.queries == q0 + 2, "h2 is refilled from its L2 copy; only h1 and t9 come from Mlt"
    assert a.l1.expire_at(K.global_typed_key("doc", "s", "h2")) == pytest.approx(clock() + 30)
    assert a.l2.get(K.global_typed_key("doc", "s", "h1")) is not None
    assert a.l2.get(K.task_key("t9")) is not None
    assert a.memory_metrics()["mw_prewarmed"] == 3
    assert a.prewarm(top_n=10) == 0, "nothing missing any more"


def test_prewarm_counts_only_copies_l1_kept(make_manager: Make, clock: ManualClock) -> None:
    """With no node tier (MW_L1_TTL_S=0) an L2 copy warms nothing here: mw_prewarmed stays 0, and Mlt is not asked."""
    a = make_manager("a", l1_ttl_s=0)
    a.mlt.put_item("doc", "s", "h1", "one")
    for _ in range(3):
        a.get_item_typed("doc", "s", "h1")
    assert a.l2.get(K.global_typed_key("doc", "s", "h1")) is not None
    q0 = a.mlt.queries
    assert a.prewarm(top_n=10) == 0
    assert a.mlt.queries == q0
    assert a.memory_metrics()["mw_prewarmed"] == 0


@pytest.mark.parametrize("half_life_s", [0.0, 60.0])
def test_prewarm_follows_what_is_hot_now_only_with_a_half_life(
    make_manager: Make, clock: ManualClock, half_life_s: float
) -> None:
    """A key hot an hour ago and unread since is refreshed every time without a half-life (cumulative counts), and
    dropped from the ranking with one: after 60 half-lives its 50 reads count for nothing."""
    a = make_manager("a", l1_ttl_s=30, l2_ttl_s=60, hot_items_half_life_s=half_life_s)
    a.mlt.put_item("doc", "s", "was-hot", "old")
    a.mlt.put_item("doc", "s", "now-hot", "new")
    for _ in range(50):
        a.get_item_typed("doc", "s", "was-hot")
    clock.advance(3600)
    for _ in range(3):
        a.get_item_typed("doc", "s", "now-hot")
    clock.advance(29)
    q0 = a.mlt.queries
    warmed = a.prewarm(top_n=10)
    hot = [name for name, _ in a.get_hot_items(10)]
    if half_life_s:
        assert hot == ["doc:s:now-hot"] and warmed == 1
        assert a.mlt.queries == q0, "now-hot's L2 copy refills L1; was-hot is not loaded again"
    else:
        assert hot == ["doc:s:was-hot", "doc:s:now-hot"] and warmed == 2
        assert a.mlt.queries == q0 + 1, "was-hot's copies expired long ago: prewarming loads it from Mlt"


def test_hot_items_half_life_is_validated_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="MW_HOT_ITEMS_HALF_LIFE_S='-1'"):
        MwConfig.from_env({"MW_HOT_ITEMS_HALF_LIFE_S": "-1"})
    with pytest.raises(ConfigError, match="MW_HOT_ITEMS_HALF_LIFE_S='soon'"):
        MwConfig.from_env({"MW_HOT_ITEMS_HALF_LIFE_S": "soon"})
    with pytest.raises(ConfigError, match="MW_HOT_ITEMS_HALF_LIFE_S=inf"):
        MwConfig(hot_items_half_life_s=math.inf)
    assert MwConfig.from_env({"MW_HOT_ITEMS_HALF_LIFE_S": "90"}).hot_items_half_life_s == 90.0
