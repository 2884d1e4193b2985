"""A real Prometheus for the tests (the Debian package's binary): started on a free port with a config of scrape
jobs, queried over its HTTP API, and waited on by condition, never by a fixed sleep."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from .test_dashboard import DASHBOARD, queries

PROMETHEUS = shutil.which("prometheus")
SKIP_REASON = "prometheus is not on PATH (Debian: apt-get install prometheus; .ci/run installs it)"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "mw-alerts.yml"
TIMEOUT_S = 120.0
"""How long a wait for Prometheus may take: generous, a busy 2-core machine scrapes late."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

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

    def until(self, what: str, cond: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus never got there in {timeout_s:g} s: {what}")
            time.sleep(0.25)

    def scrapes(self, job: str) -> int:
        """Scrapes of ``job`` in the last 10 minutes (successful or not)."""
        return int(self.scalar(f'sum(count_over_time(up{{job="{job}"}}[10m]))') or 0)

    def more_scrapes(self, job: str, n: int = 3) -> None:
        """Wait for ``n`` more scrapes of ``job``: every ``rate()`` window then holds two samples or more."""
        before = self.scrapes(job)
        self.until(f"{n} more scrapes of {job}", lambda: self.scrapes(job) >= before + n)


@contextlib.contextmanager
def running(
    home: Path, jobs: Mapping[str, list[str]], *, rules: Sequence[Path] = (), interval: str = "1s"
) -> Iterator[Prometheus]:
    """Prometheus in ``home`` scraping each job's targets (``host:port``) every ``interval``, with ``rules`` loaded."""
    assert PROMETHEUS is not None, SKIP_REASON
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}"]
    if rules:
        for path in rules:
            shutil.copy(path, home / path.name)
        lines.append(f"rule_files: [{', '.join(path.name for path in rules)}]")
    configs = ", ".join(
        f"{{job_name: {job}, static_configs: [{{targets: [{', '.join(repr(t) for t in targets)}]}}]}}"
        for job, targets in jobs.items()
    )
    lines.append(f"scrape_configs: [{configs}]")
    (home / "prometheus.yml").write_text("\n".join(lines) + "\n")
    port = free_port()
    log_path = home / "prometheus.log"
    with log_path.open("w") as log:
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
        prom = Prometheus(f"http://127.0.0.1:{port}", log_path)
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"prometheus exited: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=5) as reply:
                        return bool(reply.status == 200)
                except OSError:
                    return False

            prom.until("Prometheus is ready", ready)
            yield prom
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(20)


def instance_regex(target: str) -> str:
    """The dashboard's ``$instance`` for one target, as a PromQL regex inside double quotes."""
    return re.escape(target).replace("\\", "\\\\")


def panel_queries(instance: str = ".*", rate_interval: str = "30s", range_: str = "1m") -> dict[str, list[str]]:
    """Panel title -> its PromQL, with Grafana's variables put in as the dashboard would for ``instance``."""
    out = {}
    for title, exprs in queries(json.loads(DASHBOARD.read_text())).items():
        if title.startswith("$"):
            continue
        out[title] = [
            e.replace("$__rate_interval", rate_interval).replace("$__range", range_).replace("$instance", instance)
            for e in exprs
        ]
    return out


def panels_without_data(prom: Prometheus, instance: str = ".*") -> list[str]:
    """``panel: query`` for each panel query that returns nothing (empty: every panel has data)."""
    return [
        f"{title}: {expr}" for title, exprs in panel_queries(instance).items() for expr in exprs if not prom.query(expr)
    ]


def unhealthy_rules(prom: Prometheus, rules: Path = RULES) -> list[str]:
    """The alert rules of the file ``rules`` that Prometheus failed to evaluate, once it has evaluated every one."""
    alerts = rules.read_text().count("- alert: ")
    never = "0001-01-01T00:00:00Z"

    def loaded() -> list[dict[str, Any]]:
        groups = prom.get("/api/v1/rules")["groups"]
        return [r for g in groups if Path(g["file"]).name == rules.name for r in g["rules"]]

    prom.until(
        f"every rule of {rules.name} evaluated",
        lambda: len(loaded()) == alerts and all(r.get("lastEvaluation", never) != never for r in loaded()),
    )
    return [r["name"] for r in loaded() if r["health"] != "ok"]
