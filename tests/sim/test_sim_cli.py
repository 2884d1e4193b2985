"""``mw-sim run`` writes the JSON result, the Markdown report and the plots, and exits 0 only on a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.cli import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, main

QUICK = ["--agents", "6", "--duration", "90", "--warmup", "20", "--quiet"]


def test_run_writes_report_and_passes(tmp_path: Path) -> None:
    # 300 s, not QUICK's 90: in 90 s the herd's true hit ratio is about 0.70 (coalesced callers are misses).
    args = [*QUICK[:2], "--duration", "300", *QUICK[4:]]
    assert main(["run", "simulations/scenarios/hot-key-herd.toml", *args, "--out", str(tmp_path)]) == EXIT_PASS
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["verdict"]["passed"]
    assert "baseline" in result["runs"]
    report = (tmp_path / "report.md").read_text()
    for plot in ("hit_ratio.png", "mlt_qps.png", "l0_size.png", "loads_per_expiry.png"):
        assert (tmp_path / plot).stat().st_size > 1000
        assert f"]({plot})" in report
    assert (tmp_path / "logs" / "cached.log").exists()


def test_failing_verdict_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "strict.toml"
    source = Path("simulations/scenarios/hot-key-herd.toml").read_text()
    scenario.write_text(source.replace("hit_ratio_week1 = 0.70", "hit_ratio_week1 = 0.9999"))
    code = main(["run", str(scenario), *QUICK, "--no-baseline", "--out", str(tmp_path / "out")])
    assert code == EXIT_FAIL
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [c["name"] for c in result["verdict"]["checks"] if not c["passed"]] == ["hit_ratio_week1"]


def test_bad_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[items]\ncatalogue = 10\n')
    assert main(["run", str(bad), *QUICK]) == EXIT_ERROR
    assert "catalogue" in capsys.readouterr().err


def test_list_names_the_bundled_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == EXIT_PASS
    out = capsys.readouterr().out
    for name in ("staging-synthetic", "hot-key-herd", "task-churn", "week2-prewarm"):
        assert name in out
