"""docs/monitoring.md lists every exported family (with its type and labels) and every alert rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mw.metric_families import SPECS

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
