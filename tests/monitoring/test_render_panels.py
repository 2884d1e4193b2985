"""deploy/grafana/render_panels.py without a Prometheus: the panels' queries as sent, legends, overrides, and its
errors (exit 2, one line). ``test_sim_scrape.py`` runs it against a real Prometheus."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .prometheus_server import free_port
from .test_dashboard import DASHBOARD

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "render_panels.py"


@pytest.fixture(scope="module")
def rp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_panels", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_panels", module)  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_every_query_is_sent_with_grafanas_variables_put_in(rp: Any) -> None:
    variables = {"__rate_interval": "30s", "__interval": "2s", "__range": "600s", "instance": "host:1"}
    panels = rp.panels(dashboard(), variables)
    assert [p.id for p in panels] == [p["id"] for p in dashboard()["panels"]]
    sent = [expr for p in panels for expr, _ in p.exprs]
    assert sent and all("$" not in e for e in sent), [e for e in sent if "$" in e]
    assert all('instance=~"host:1"' in e for e in sent)
    assert any("[30s]" in e for e in sent)
    left = rp.panels(dashboard(), {"instance": "host:1"})  # a variable not given stays: the check above can fail
    assert any("$__rate_interval" in e for p in left for e, _ in p.exprs)


def test_legends_overrides_and_durations(rp: Any) -> None:
    assert rp.legend("{{tier}}", {"tier": "l1"}, "x") == "l1"
    assert rp.legend("p99 cached {{ status }}", {"status": "running"}, "x") == "p99 cached running"
    assert rp.legend("", {}, "sum(x)") == "sum(x)"
    l0 = next(p for p in rp.panels(dashboard(), {}) if p.title == "L0 size against its bound")
    assert rp._override(l0, "max bytes") == ("bytes", True)
    assert rp._override(l0, "items") == ("short", False)
    assert rp.parse_duration("1.5m") == 90.0
    with pytest.raises(rp.RenderError):
        rp.parse_duration("ten minutes")


def test_an_unreachable_prometheus_exits_2_with_one_line(
    rp: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert rp.main(["--prometheus", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("render_panels: ") and err.count("\n") == 1 and url in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_dashboard_that_is_not_json_exits_2(rp: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert rp.main(["--prometheus", "http://127.0.0.1:1", "--dashboard", str(bad), "--out", str(tmp_path)]) == 2
    assert "cannot read the dashboard" in capsys.readouterr().err


def test_a_panel_without_data_is_drawn_and_flagged(rp: Any, tmp_path: Path) -> None:
    panel = rp.Panel(id=1, title="Empty", kind="timeseries", unit="short", description="", exprs=[])
    path = tmp_path / "empty.png"
    rp.draw(panel, [], path, (0.0, 60.0))
    assert path.read_bytes()[:4] == b"\x89PNG"
    series = [rp.Series("a", [0.0, 30.0, 60.0], [0.1, 0.5, float("nan")], "percentunit")]
    drawn = tmp_path / "one.png"
    rp.draw(panel, series, drawn, (0.0, 60.0))
    assert drawn.stat().st_size > path.stat().st_size
