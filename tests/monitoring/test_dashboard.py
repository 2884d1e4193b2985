"""The Grafana dashboard: every panel's PromQL names only metrics the collector exports, and parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mw.metric_families import series_names

from .promql import metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "mw-dashboard.json"
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")


def queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Panel title -> its PromQL expressions (and the templating variables' metrics, under ``$name``)."""
    out = {panel["title"]: [t["expr"] for t in panel.get("targets", ())] for panel in dashboard["panels"]}
    for var in dashboard.get("templating", {}).get("list", ()):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        found = LABEL_VALUES.findall(text)
        if found:
            out[f"${var['name']}"] = found
    return out


def unknown_metrics(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Panel -> metrics its queries name that the collector does not export (or ``{"<none>"}``: names none)."""
    exported = series_names()
    bad = {}
    for title, exprs in queries(dashboard).items():
        named = set().union(*(metric_names(e) for e in exprs)) if exprs else set()
        missing = (named - exported) if named else {"<none>"}
        if missing:
            bad[title] = missing
    return bad


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_every_panel_names_only_exported_metrics() -> None:
    assert unknown_metrics(load()) == {}


def test_the_check_catches_a_metric_the_collector_does_not_export() -> None:
    dashboard = load()
    dashboard["panels"][0]["targets"][0]["expr"] = 'sum(rate(mw_hit_total{instance=~"$instance"}[$__rate_interval]))'
    dashboard["panels"][1]["targets"] = []
    bad = unknown_metrics(dashboard)
    assert bad == {dashboard["panels"][0]["title"]: {"mw_hit_total"}, dashboard["panels"][1]["title"]: {"<none>"}}


def test_the_checklist_panels_are_there() -> None:
    titles = {p["title"] for p in load()["panels"]}
    wanted = {
        "Hit ratio per tier",
        "Mlt QPS",
        "L0 size against its bound",
        "L1 size against its bound",
        "Task TTLs",
        "Hot items",
        "Invalidation lag",
    }
    assert wanted <= titles
    ids = [p["id"] for p in load()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH (apt-get install prometheus)")
def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's variables put in as Prometheus would see them)."""
    yaml = pytest.importorskip("yaml", reason="needs PyYAML (the [test] extra)")
    rules = []
    for i, (title, exprs) in enumerate(queries(load()).items()):
        if title.startswith("$"):
            continue
        for j, expr in enumerate(exprs):
            expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$instance", ".*")
            rules.append({"record": f"panel_{i}_{j}", "expr": expr})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    unclosed = {"record": "x", "expr": "sum(rate(mw_x[5m])"}
    broken.write_text(yaml.safe_dump({"groups": [{"name": "p", "rules": [unclosed]}]}))
    assert subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True, timeout=60).returncode != 0
