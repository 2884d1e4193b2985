"""A real Prometheus scrapes this process's ``mw.metrics.serve`` endpoint: it parses the exposition, loads and
evaluates the alert rules without error, its hit-ratio query answers the value the runtime reports, and every
dashboard panel's query returns data."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mw
from mw import MwManager

from .test_dashboard import DASHBOARD, queries

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "mw-alerts.yml"
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not on PATH (Debian: apt-get install prometheus; .ci/run installs it)"
)
Make = Callable[..., MwManager]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def until(self, what: str, cond: Callable[[], bool], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus never got there: {what}")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def prometheus(metrics_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus started for the module, scraping the metrics endpoint every second, with the alert rules."""
    assert PROMETHEUS is not None
    home = tmp_path_factory.mktemp("prometheus")
    shutil.copy(RULES, home / RULES.name)
    target = urllib.parse.urlparse(metrics_url).netloc
    (home / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{RULES.name}]\n"
        f"scrape_configs: [{{job_name: mw, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = _free_port()
    log = (home / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(home / 'prometheus.log').read_text()[-2000:]}")
            try:
                return bool(prom.query('up{job="mw"} == 1'))
            except OSError:
                return False

        prom.until("the mw target is up", ready)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)
        log.close()


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

    # A few more scrapes, so every rate() window holds two samples or more.
    scrapes = prometheus.scalar('count_over_time(up{job="mw"}[1m])') or 0
    prometheus.until(
        "three more scrapes", lambda: (prometheus.scalar('count_over_time(up{job="mw"}[1m])') or 0) >= scrapes + 3
    )
    empty = []
    for title, exprs in queries(json.loads(DASHBOARD.read_text())).items():
        if title.startswith("$"):
            continue
        for expr in exprs:
            expr = expr.replace("$__rate_interval", "30s").replace("$__range", "1m").replace("$instance", ".*")
            if not prometheus.query(expr):
                empty.append(f"{title}: {expr}")
    assert empty == [], "panel queries without data"

    alerts = RULES.read_text().count("- alert: ")

    def evaluated() -> bool:
        rules = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
        never = "0001-01-01T00:00:00Z"
        return len(rules) == alerts and all(r.get("lastEvaluation", never) != never for r in rules)

    prometheus.until("every rule evaluated", evaluated)
    rules = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
    assert [r["name"] for r in rules if r["health"] != "ok"] == [], "rules that failed to evaluate"
