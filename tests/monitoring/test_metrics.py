"""The Prometheus export: every family moves when the runtime does the thing it counts, on fakeredis and on a
real Redis; names follow Prometheus conventions; label values stay bounded and never carry a secret."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from mw import MwManager
from mw import faults as F
from mw import keys as K
from mw.errors import MltUnavailable
from mw.metric_families import SPECS, series_names

from .conftest import Scrape

Make = Callable[..., MwManager]
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def value(scraped: Series, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


class Delta:
    """Scrapes before and after an action; ``moved(name, **labels)`` is the change of one series."""

    def __init__(self, scrape: Scrape) -> None:
        self.scrape = scrape
        self.before = scrape()
        self.after = self.before

    def step(self) -> Delta:
        self.before = self.after
        self.after = self.scrape()
        return self

    def moved(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


def test_names_follow_prometheus_conventions() -> None:
    for spec in SPECS:
        assert re.fullmatch(r"mw_[a-z0-9_]+", spec.name), spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert not spec.name.endswith(("_ms", "_milliseconds", "_kb")), f"{spec.name}: base units only"
        if spec.unit == "s":
            assert spec.name.endswith("_seconds"), spec.name
        if spec.unit == "By":
            assert spec.name.endswith("_bytes"), spec.name
    assert "mw_hit_ratio" in {s.name for s in SPECS}, "the heartbeat's gauge is exported too"


def test_a_scrape_shows_every_family(make_manager: Make, scrape: Scrape) -> None:
    make_manager("a").get_item_typed("doc", "s", "1")
    shown = {name for name, _ in scrape()}
    hot = {"mw_hot_item_reads"}  # no sample until an item is read twice
    assert series_names() - hot <= shown
    assert {n for n in shown if n.startswith("mw_")} <= series_names(), "nothing exported that SPECS does not list"


def test_reads_count_per_tier_and_the_ratio_gauge_agrees(make_manager: Make, scrape: Scrape) -> None:
    a, b = make_manager("a"), make_manager("b")
    far = make_manager("c", node="n2")
    d = Delta(scrape)
    a.set_global_item_typed("doc", "s", "1", {"v": 1})
    a.get_item_typed("doc", "s", "1")
    d.step()
    assert d.moved("mw_hits_total", tier="l0") == 1 and d.moved("mw_hits_total", tier="l1") == 0
    b.get_item_typed("doc", "s", "1")
    d.step()
    assert d.moved("mw_hits_total", tier="l1") == 1, "b's L0 was empty; the node's L1 had a's write"
    far.get_item_typed("doc", "s", "1")
    d.step()
    assert d.moved("mw_hits_total", tier="l2") == 1, "another node: only Redis had it"
    a.get_item_typed("doc", "s", "absent")
    d.step()
    assert d.moved("mw_misses_total") == 1 and d.moved("mw_loads_total", source="mlt") == 1
    b.get_item_typed("doc", "s", "absent")
    d.step()
    assert d.moved("mw_negative_cache_hits_total") == 1 and d.moved("mw_loads_total", source="mlt") == 0
    a.get_or_load("doc", "s", "2", loader=lambda: {"v": 2})
    d.step()
    assert d.moved("mw_loads_total", source="loader") == 1
    hits = sum(value(d.after, "mw_hits_total", tier=t) for t in ("l0", "l1", "l2"))
    misses = value(d.after, "mw_misses_total")
    assert value(d.after, "mw_hit_ratio") == pytest.approx(hits / (hits + misses))
    assert value(d.after, "mw_agents") >= 3


def test_task_cache_counts_and_task_ttls(make_manager: Make, scrape: Scrape) -> None:
    a = make_manager("a")
    d = Delta(scrape)
    a.cache_task_row({"id": 7, "status": "running"})
    assert a.get_task(7) is not None
    d.step()
    assert d.moved("mw_task_cache_hits_total") == 1
    assert d.moved("mw_task_cache_ttl_seconds_count", status="running") == 1
    assert d.moved("mw_task_cache_ttl_seconds_bucket", status="running", le="10.0") == 1, "running: 10 s or less"
    assert d.moved("mw_task_ttl_exceeded_total", status="running") == 0, "cache_task_row keeps the status TTL"
    assert value(d.after, "mw_task_ttl_limit_seconds", status="running") == a.config.task_ttl_s("running")
    a.invalidate_task(7)
    assert a.get_task(7) is None
    d.step()
    assert d.moved("mw_task_evictions_total") == 1 and d.moved("mw_task_cache_misses_total") == 1
    # The origin system's way: a running row through a generic write with an hour's TTL.
    a.set_global_item_typed("task", "by_id", "8", {"id": 8, "status": "running"}, ttl_s=3600)
    a.set_global_item_typed("task", "by_id", "9", {"id": 9, "status": "made-up"}, ttl_s=5)
    d.step()
    assert d.moved("mw_task_ttl_exceeded_total", status="running") == 1
    assert d.moved("mw_task_cache_ttl_seconds_count", status="other") == 1, "an unknown status is 'other'"
    assert d.moved("mw_task_ttl_exceeded_total", status="other") == 0, "5 s is within the default TTL"


def test_sizes_and_evictions_of_l0_and_l1(make_manager: Make, scrape: Scrape) -> None:
    d = Delta(scrape)
    a = make_manager("a", l0_max_items=4, l1_max_items=6)
    for i in range(20):
        a.set_global_item_typed("doc", "s", str(i), {"text": "x" * 100})
    d.step()
    assert d.moved("mw_l0_max_items") == 4 and d.moved("mw_l1_max_items") == 6
    assert 0 < d.moved("mw_l0_items") <= 4 and 0 < d.moved("mw_l1_items") <= 6
    assert d.moved("mw_l0_bytes") > 0 and d.moved("mw_l1_bytes") > 400
    assert d.moved("mw_evictions_total", tier="l0") >= 16 and d.moved("mw_evictions_total", tier="l1") >= 14
    a.close()
    d.step()
    assert d.moved("mw_evictions_total", tier="l0") == 0, "a closed agent's evictions stay counted"
    assert d.moved("mw_l0_items") < 0


def test_single_flight_lease_waits_and_stale_fills(make_manager: Make, scrape: Scrape) -> None:
    a, b = make_manager("a"), make_manager("b")
    other = make_manager("c", l1_max_items=4321)  # another cluster on the same L2: "another process"
    d = Delta(scrape)
    lead = a.begin_load("doc", "s", "1")
    follower = b.begin_load("doc", "s", "1")
    elsewhere = other.begin_load("doc", "s", "1")
    assert (lead.state, follower.state, elsewhere.state) == ("lead", "wait", "wait")
    assert a.finish_load(lead, {"v": 1}, ttl_s=60)
    assert b.poll_load(follower).state in ("hit", "shared") and other.poll_load(elsewhere).value == {"v": 1}
    d.step()
    assert d.moved("mw_coalesced_total") == 1, "b followed a's load in this process"
    assert d.moved("mw_lease_waits_total") == 1, "the other cluster waited on a's lease"
    stale = a.begin_load("doc", "s", "2")
    a.del_global_item_typed("doc", "s", "2")
    assert not a.finish_load(stale, {"v": "old"}, ttl_s=60)
    d.step()
    assert d.moved("mw_stale_fills_refused_total") == 1


def test_repeated_loads_count_a_reload_within_the_ttl_only(make_manager: Make, scrape: Scrape) -> None:
    a = make_manager("a")
    key = K.global_typed_key("doc", "s", "1")
    d = Delta(scrape)
    a.get_or_load("doc", "s", "1", loader=lambda: {"v": 1}, ttl_s=60)
    a.del_global_item_typed("doc", "s", "1")
    a.get_or_load("doc", "s", "1", loader=lambda: {"v": 1}, ttl_s=60)
    d.step()
    assert d.moved("mw_loads_total", source="loader") == 2
    assert d.moved("mw_repeated_loads_total") == 0, "a delete resets the key: its next load is a first one"
    # Redis lost the value (an eviction under maxmemory) and the local copies went: the next read loads again.
    a.l2.client.delete(a.l2.phys(key))
    a.clear()
    a.l1.pop(key)
    a.get_or_load("doc", "s", "1", loader=lambda: {"v": 1}, ttl_s=60)
    d.step()
    assert d.moved("mw_repeated_loads_total") == 1
    a.clock.advance(61)  # type: ignore[attr-defined]
    a.get_or_load("doc", "s", "1", loader=lambda: {"v": 1}, ttl_s=60)
    d.step()
    assert d.moved("mw_loads_total", source="loader") == 1 and d.moved("mw_repeated_loads_total") == 0


def test_tier_errors_of_redis_and_mlt(make_manager: Make, scrape: Scrape) -> None:
    a = make_manager("a", l1_max_items=999)  # its own cluster: the failing L2 is marked down for it alone

    def fail(point: str, _key: str | None) -> F.Action | None:
        if point == "l2.get":
            return F.Fail(ConnectionError("injected"))
        if point == "mlt.get_item":
            return F.Fail(MltUnavailable("injected"))
        return None

    d = Delta(scrape)
    with F.injected(fail), pytest.raises(MltUnavailable):
        a.get_item_typed("doc", "s", "1")
    d.step()
    assert d.moved("mw_tier_errors_total", tier="l2") >= 1 and d.moved("mw_tier_errors_total", tier="mlt") == 1


def test_prewarm_and_invalidations_from_another_cluster(make_manager: Make, scrape: Scrape) -> None:
    a = make_manager("a")
    other = make_manager("b", l1_max_items=4321)
    d = Delta(scrape)
    a.set_global_item_typed("doc", "s", "1", {"v": 1})
    for _ in range(3):
        a.get_item_typed("doc", "s", "1")
    a.l1.pop(K.global_typed_key("doc", "s", "1"))
    assert a.prewarm() == 1
    d.step()
    assert d.moved("mw_prewarmed_total") == 1
    assert other.get_item_typed("doc", "s", "1") == {"v": 1}
    assert other.cluster.bus is not None
    received = other.cluster.bus.received
    a.set_global_item_typed("doc", "s", "1", {"v": 2})
    _wait_for(lambda: other.cluster.bus is not None and other.cluster.bus.received > received)
    d.step()
    assert d.moved("mw_invalidations_received_total") >= 1
    assert d.moved("mw_invalidation_lag_seconds_count") >= 1
    assert d.moved("mw_invalidation_lag_seconds_bucket", le="+Inf") >= 1


def _wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "the bus never delivered"
        time.sleep(0.01)


def test_hot_items_are_the_top_n_only(make_manager: Make, scrape: Scrape) -> None:
    a = make_manager("a")
    for i in range(50):
        for _ in range(2 + (i == 7) * 40):
            a.get_item_typed("doc", "s", f"k{i}")
    items = {dict(labels)["item"]: v for (name, labels), v in scrape().items() if name == "mw_hot_item_reads"}
    assert 0 < len(items) <= 10, "a bounded label set: the top 10, whatever the key count"
    assert max(items, key=lambda k: items[k]) == "doc:s:k7"


def test_label_values_are_bounded_and_carry_no_secret(
    make_manager: Make, scrape_text: Callable[[], str], backend: str, request: pytest.FixtureRequest
) -> None:
    a = make_manager("a")
    for i in range(30):
        a.get_item_typed("doc", "s", str(i))
        a.get_item_typed("doc", "s", str(i))
    text = scrape_text()
    allowed = {
        "tier": {"l0", "l1", "l2", "mlt"},
        "source": {"mlt", "loader"},
        "status": {"created", "queued", "running", "retry", "completed", "failed", "cancelled", "other"},
    }
    items = set()
    for name, labels in re.findall(r"^(mw_\w+)\{([^}]*)\}", text, re.M):
        for label, val in re.findall(r'(\w+)="([^"]*)"', labels):
            if label == "item":
                items.add(val)
            elif label != "le":
                assert val in allowed[label], f"{name}: {label}={val!r}"
    assert len(items) <= 10
    secrets: list[str] = [a.config.redis_url or "", a.config.mlt_dsn or ""]
    if backend == "real":
        url: Any = request.getfixturevalue("mw_redis_url")
        secrets.append(getattr(url, "password", None) or "")
    for secret in filter(None, secrets):
        assert secret not in text
    assert "@" not in text and "redis://" not in text and "postgresql://" not in text


def test_a_frozen_collector_keeps_the_final_gauges_after_the_agents_close(make_manager: Make) -> None:
    """``mw-sim run --metrics-port`` freezes its collector when the run ends: the agents close right after."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    metrics = pytest.importorskip("mw.metrics", reason="needs the [prometheus] extra (prometheus_client)")

    def scraped(collector: Any) -> Series:
        registry = CollectorRegistry()
        registry.register(collector)
        text = generate_latest(registry).decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    a = make_manager("a")
    for i in range(5):
        a.set_global_item_typed("doc", "s", str(i), {"v": i})
        a.get_item_typed("doc", "s", str(i))
    frozen, live = metrics.MwCollector(), metrics.MwCollector()
    at_end = scraped(live)
    assert value(at_end, "mw_l0_items") >= 5 and not frozen.frozen
    frozen.freeze()
    a.close()
    assert frozen.frozen
    assert value(scraped(live), "mw_l0_items") < value(at_end, "mw_l0_items"), "a live collector loses the L0"
    assert scraped(frozen) == at_end
