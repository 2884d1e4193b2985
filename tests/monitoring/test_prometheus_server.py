"""A real Prometheus scrapes this process's ``mw.metrics.serve`` endpoint: it parses the exposition, loads and
evaluates the alert rules without error, its hit-ratio query answers the value the runtime reports, and every
dashboard panel's query returns data."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator

import pytest

import mw
from mw import MwManager

from .prometheus_server import (
    PROMETHEUS,
    RULES,
    SKIP_REASON,
    Prometheus,
    panels_without_data,
    running,
    unhealthy_rules,
)

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)
Make = Callable[..., MwManager]


@pytest.fixture(scope="module")
def prometheus(metrics_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus started for the module, scraping the metrics endpoint every second, with the alert rules."""
    target = urllib.parse.urlparse(metrics_url).netloc
    with running(tmp_path_factory.mktemp("prometheus"), {"mw": [target]}, rules=[RULES]) as prom:
        prom.until("the mw target is up", lambda: bool(prom.query('up{job="mw"} == 1')))
        yield prom


def test_prometheus_scrapes_the_runtime_and_the_queries_answer(make_manager: Make, prometheus: Prometheus) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    other = make_manager("c", l1_max_items=4321)
    for i in range(20):
        a.set_global_item_typed("doc", "s", str(i), {"v": i})
    for _ in range(3):
        for i in range(20):
            a.get_item_typed("doc", "s", str(i))
            b.get_item_typed("doc", "s", str(i))
    for i in range(10):
        a.get_item_typed("doc", "s", f"absent{i}")
    a.cache_task_row({"id": 1, "status": "running"})
    a.get_task(1)
    other.get_item_typed("doc", "s", "0")
    a.set_global_item_typed("doc", "s", "0", {"v": "new"})  # an invalidation the other cluster receives
    bus = other.cluster.bus
    assert bus is not None
    prometheus.until("the other cluster received the invalidation", lambda: bus.received > 0, 30)

    reported = mw.process_memory_metrics()
    hits, misses = reported["mw_hits"], reported["mw_misses"]
    prometheus.until(
        "a scrape after the activity",
        lambda: (
            prometheus.scalar('sum(mw_hits_total{job="mw"})') == hits
            and prometheus.scalar('mw_misses_total{job="mw"}') == misses
        ),
    )
    ratio = prometheus.scalar(
        'sum(mw_hits_total{job="mw"}) / (sum(mw_hits_total{job="mw"}) + sum(mw_misses_total{job="mw"}))'
    )
    assert ratio == pytest.approx(reported["mw_hit_ratio"], abs=1e-6)
    assert prometheus.scalar('mw_hit_ratio{job="mw"}') == pytest.approx(reported["mw_hit_ratio"], abs=1e-6)

    prometheus.more_scrapes("mw")  # every rate() window then holds two samples or more
    assert panels_without_data(prometheus) == [], "panel queries without data"

    assert unhealthy_rules(prometheus) == [], "rules that failed to evaluate"
