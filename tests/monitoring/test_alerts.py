"""The alert rules: promtool checks them and runs their unit tests; every alert is tested firing and silent;
breaking a rule (never firing, always firing) fails its tests; every metric a rule names is exported."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mw.metric_families import series_names

from .promql import metric_names

yaml = pytest.importorskip("yaml", reason="needs PyYAML (the [test] extra)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "mw-alerts.yml"
TESTS = DEPLOY / "mw-alerts.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not on PATH (Debian: apt-get install prometheus; .ci/run installs it)"
)


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", ()):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"
    assert {"MwHitRatioLow", "MwHitRatioDrop", "MwL0NearBound", "MwL1NearBound", "MwTaskCachedLongerThanTTL"} <= names
    assert {"MwTierErrors", "MwRepeatedLoads", "MwHotItemsChurn"} <= names


def test_rules_name_only_exported_metrics() -> None:
    exported = series_names()
    for rule in alerts():
        named = metric_names(rule["expr"])
        assert named, f"{rule['alert']}: no metric found in its expression"
        assert named <= exported, f"{rule['alert']} names metrics the collector does not export: {named - exported}"


@needs_promtool
@pytest.mark.parametrize("broken", ["vector(0) > 1", "vector(1)"], ids=["never-fires", "always-fires"])
def test_a_broken_rule_fails_its_unit_tests(tmp_path: Path, broken: str) -> None:
    """Each rule in turn replaced by one that never (or always) fires: promtool's tests must catch every one."""
    shutil.copy(TESTS, tmp_path / TESTS.name)
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            original = rule["expr"]
            rule["expr"] = broken
            (tmp_path / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
            rule["expr"] = original
            done = promtool("test", "rules", TESTS.name, cwd=tmp_path)
            assert done.returncode != 0, f"{rule['alert']} as {broken!r} still passes its tests"
            assert f"alertname: {rule['alert']}" in done.stdout + done.stderr
