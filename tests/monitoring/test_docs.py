"""docs/monitoring.md lists every exported family (with its type and labels) and every alert rule, and shows every
dashboard panel as a PNG."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mw.metric_families import SPECS

from .test_dashboard import DASHBOARD

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "mw-alerts.yml"


def rows() -> dict[str, list[str]]:
    out = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(mw_\w+|Mw\w+)` \|(.*)\|$", line)
        if m:
            out[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return out


def test_every_family_is_documented_with_its_type_and_labels() -> None:
    documented = rows()
    for spec in SPECS:
        assert spec.name in documented, f"{spec.name} missing from docs/monitoring.md"
        kind, labels = documented[spec.name][0], documented[spec.name][1]
        assert kind == spec.kind, spec.name
        assert set(re.findall(r"`(\w+)`", labels)) == set(spec.labels), spec.name
    assert {n for n in documented if n.startswith("mw_")} == {s.name for s in SPECS}, "documented but not exported"


def test_every_alert_is_documented() -> None:
    yaml = pytest.importorskip("yaml", reason="needs PyYAML (the [test] extra)")
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert alerts == {n for n in rows() if n.startswith("Mw")}


def _render_panels() -> ModuleType:
    """deploy/grafana/render_panels.py (a script, not a package module): its file names for the panels."""
    path = DOC.parents[1] / "deploy" / "grafana" / "render_panels.py"
    spec = importlib.util.spec_from_file_location("render_panels", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_panels", module)  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def missing_panel_images(dashboard: dict[str, Any]) -> list[str]:
    """The PNG of each dashboard panel that docs/monitoring/ lacks or docs/monitoring.md does not show."""
    slug = _render_panels().slug
    text = DOC.read_text()
    missing = []
    for panel in dashboard["panels"]:
        name = f"monitoring/panel-{panel['id']:02d}-{slug(panel['title'])}.png"
        if f"]({name})" not in text or not (DOC.parent / name).is_file():
            missing.append(name)
    return missing


def test_every_dashboard_panel_is_shown_as_a_png() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert missing_panel_images(dashboard) == []
    dashboard["panels"].append({"id": 99, "title": "A panel nobody drew"})
    assert missing_panel_images(dashboard) == ["monitoring/panel-99-a-panel-nobody-drew.png"]
