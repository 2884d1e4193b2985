"""``begin_get_or_load``: ``get_or_load`` in steps, for schedulers that cannot block (the simulator's agents).

The same decision as the blocking and asyncio forms (one function, :meth:`mw.readthrough.ReadThrough.with_l0`): an
L0 hit, XFetch's early refresh of a hit due for one, else L1 -> L2 -> one load, filled with the caller's TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mw import ManualClock, MwConfig, MwManager
from mw import keys as K

Make = Callable[..., MwManager]
KEY = K.global_typed_key("doc", "s", "hot")


def test_a_miss_leads_and_fills_with_the_callers_ttl(make_manager: Make, clock: ManualClock) -> None:
    a = make_manager("a", ttl_jitter=0.0)
    plan = a.begin_get_or_load("doc", "s", "hot", ttl_s=42)
    assert plan.state == "lead" and a.telemetry.misses == 1
    assert a.finish_load(plan, "v1", delta=0.01) and plan.state == "done"
    assert a.l0.expire_at(KEY) == pytest.approx(clock() + 42) and a.l2.pttl(KEY) <= 42_000
    again = a.begin_get_or_load("doc", "s", "hot", ttl_s=42)
    assert (again.state, again.value, a.telemetry.l0_hits) == ("hit", "v1", 1)


def test_a_second_caller_waits_for_the_first(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    lead = a.begin_get_or_load("doc", "s", "hot", ttl_s=30)
    wait = b.begin_get_or_load("doc", "s", "hot", ttl_s=30)
    assert (lead.state, wait.state) == ("lead", "wait")
    a.finish_load(lead, "v1")
    assert b.poll_load(wait).state == "hit" and wait.value == "v1" and wait.shared


def test_a_hit_due_for_a_refresh_leads_once(make_manager: Make, clock: ManualClock) -> None:
    """XFetch, as ``get_or_load`` does it: one caller refreshes a hot key before expiry, the others keep the hit."""
    a = make_manager("a", xfetch_beta=1000.0, ttl_jitter=0.0, rng_seed=11)
    first = a.begin_get_or_load("doc", "s", "hot", ttl_s=60)
    a.finish_load(first, 1, delta=0.02)
    clock.advance(59)
    refresh = a.begin_get_or_load("doc", "s", "hot", ttl_s=60)
    assert refresh.state == "lead" and a.telemetry.l0_hits == 1 and a.telemetry.misses == 1
    other = a.begin_get_or_load("doc", "s", "hot", ttl_s=60)
    assert (other.state, other.value) == ("hit", 1), "someone is refreshing it: the cached value is served"
    assert a.finish_load(refresh, 2, delta=0.02) and (refresh.state, refresh.value) == ("hit", 2)
    assert a.telemetry.early_refreshes == 1 and a.telemetry.misses == 1
    assert a.l0.expire_at(KEY) == pytest.approx(clock() + 60)


def test_the_three_drivers_decide_alike(make_manager: Make, clock: ManualClock, base_config: MwConfig) -> None:
    """Sync, asyncio and split-phase: a hit due for a refresh is refreshed by each, counted the same."""
    m_ns = base_config.namespace  # each driver its own namespace inside the test's (an ACL user's keys)
    results = []
    for name, read in (
        ("sync", lambda m: m.get_or_load("doc", "s", "hot", loader=lambda: "new", ttl_s=60)),
        ("async", lambda m: asyncio.run(m.get_or_load_async("doc", "s", "hot", loader=lambda: "new", ttl_s=60))),
        ("split", None),
    ):
        m = make_manager(name, node=name, xfetch_beta=1000.0, ttl_jitter=0.0, rng_seed=11, namespace=f"{m_ns}:{name}")
        m.set_global_item_typed("doc", "s", "hot", "old", ttl_s=60)
        m.tiers.remember_delta(KEY, 0.02)
        clock.advance(59)
        if read is None:
            plan = m.begin_get_or_load("doc", "s", "hot", ttl_s=60)
            assert plan.state == "lead"
            m.finish_load(plan, "new")
            value = plan.value
        else:
            value = read(m)
        results.append((value, m.telemetry.l0_hits, m.telemetry.misses, m.telemetry.early_refreshes))
    assert results == [("new", 1, 0, 1)] * 3


def test_its_ttl_is_checked_before_anything_is_read(make_manager: Make) -> None:
    a = make_manager("a")
    with pytest.raises(ValueError, match="ttl_s"):
        a.begin_get_or_load("doc", "s", "hot", ttl_s=-1)
    assert a.telemetry.misses == 0 and a.l2.get(KEY) is None
