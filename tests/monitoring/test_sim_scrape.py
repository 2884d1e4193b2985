"""A real Prometheus scrapes a short realtime simulation, ``mw-sim run --realtime 0.1 --metrics-port N``, run through
the CLI as a child process: it sees the run progress, its hit-ratio query answers the value the run reported in
``result.json``, every dashboard panel's query returns data, and ``deploy/grafana/render_panels.py`` draws a PNG of
every panel from its answers.

Which hit ratio: Prometheus's counters are the runtime's own (``mw_hits_total``, ``mw_misses_total``, cumulative over
the child's life, frozen at the run's last sample), so the value to compare is the runtime's ratio the run reports,
``runs.cached.hit_ratio.mw_hit_ratio`` (hits / (hits + misses) of the runtime's tier counters over the measured
window) - not ``observed``, the simulator's own count, which may differ from the runtime's by up to
``simulations.measure.RATIO_TOLERANCE`` (0.01; the verdict's telemetry check judges that). The test scenario has
``warmup_s = 0``, so the window is the whole run and the two cover the same reads: the tolerance is 1e-6, the
rounding of ``result.json`` (6 decimals). The counts themselves must be equal, tier by tier, to the runtime column of
``telemetry_truth.counters`` (every agent's counters over its whole life; the simulator's bootstrap manager only
writes).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .prometheus_server import (
    PROMETHEUS,
    RULES,
    SKIP_REASON,
    TIMEOUT_S,
    Prometheus,
    free_port,
    instance_regex,
    panel_queries,
    panels_without_data,
    running,
    unhealthy_rules,
)

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "deploy" / "grafana" / "render_panels.py"
REALTIME = 0.1
"""Wall seconds per simulated second: the 150 simulated seconds take about 15 s, some 15 scrapes."""
RATIO_TOLERANCE = 1e-6
"""``result.json`` rounds its ratios to 6 decimals; the window is the whole run (see the module docstring)."""
HIT_RATIO = (
    'sum(mw_hits_total{{job="{job}"}}) / (sum(mw_hits_total{{job="{job}"}}) + sum(mw_misses_total{{job="{job}"}}))'
)
SCENARIO = """
name = "scrape-test"
description = "A small fleet for the Prometheus scrape test: reads, writes, absent ids, tasks, two nodes."
informational = true

[run]
agents = 6
nodes = 2
duration_s = 150
warmup_s = 0
seed = 7
sample_s = 5

[runtime]
l0_max_items = 64
l1_ttl_s = 30
l2_ttl_s = 600

[items]
catalog = 300
zipf_alpha = 1.2
reads_per_agent_s = 5.0
write_fraction = 0.01
absent_fraction = 0.02
absent_pool = 20

[tasks]
create_per_agent_s = 0.02
reads_per_agent_s = 0.5

[heartbeat]
every_s = 10
"""


def expected_counts(result: dict[str, Any]) -> dict[str, int]:
    """The runtime's hits per tier and misses over the run, as the run reported them (its counters column)."""
    counters = result["runs"]["cached"]["telemetry_truth"]["counters"]
    return {
        "l0": counters["l0_hits"]["runtime"],
        "l1": counters["l1_hits"]["runtime"],
        "l2": counters["l2_hits"]["runtime"],
        "misses": counters["misses"]["runtime"],
    }


def scrape_mismatches(prom: Prometheus, job: str, result: dict[str, Any]) -> list[str]:
    """Where Prometheus's answers for ``job`` disagree with the run's ``result.json`` (empty: they agree)."""
    want = expected_counts(result)
    problems = []
    for tier in ("l0", "l1", "l2"):
        got = prom.scalar(f'sum(mw_hits_total{{job="{job}",tier="{tier}"}})')
        if got != want[tier]:
            problems.append(f"mw_hits_total{{tier={tier!r}}}: Prometheus {got}, the run {want[tier]}")
    got = prom.scalar(f'sum(mw_misses_total{{job="{job}"}})')
    if got != want["misses"]:
        problems.append(f"mw_misses_total: Prometheus {got}, the run {want['misses']}")
    reported = result["runs"]["cached"]["hit_ratio"]["mw_hit_ratio"]
    for what, expr in (
        ("the hit-ratio query", HIT_RATIO.format(job=job)),
        ("mw_hit_ratio", f'mw_hit_ratio{{job="{job}"}}'),
    ):
        ratio = prom.scalar(expr)
        if ratio is None or not math.isclose(ratio, reported, rel_tol=0, abs_tol=RATIO_TOLERANCE):
            problems.append(f"{what}: Prometheus {ratio}, the run reported {reported} (within {RATIO_TOLERANCE})")
    return problems


def raw_samples(prom: Prometheus, selector: str) -> list[float]:
    """Every sample Prometheus stored for ``selector`` in the last 10 minutes, oldest first."""
    series = prom.query(f"{selector}[10m]")
    return [float(v) for s in series for _, v in s["values"]]


def render(prom: Prometheus, out: Path, instance: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(RENDER), "--prometheus", prom.url, "--last", "5m", "--out", str(out)]
    argv += ["--instance", instance, "--require-data"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)


def test_prometheus_scrapes_a_realtime_simulation(tmp_path: Path) -> None:
    scenario = tmp_path / "scrape-test.toml"
    scenario.write_text(SCENARIO)
    port, silent_port = free_port(), free_port()
    target, silent = f"127.0.0.1:{port}", f"127.0.0.1:{silent_port}"  # silent: a "run" that serves nothing
    out, log_path = tmp_path / "out", tmp_path / "mw-sim.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MW_")}  # the scenario's settings, no others
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "simulations.cli", "run", str(scenario), "--realtime", str(REALTIME)]
    argv += ["--metrics-port", str(port), "--metrics-linger", "600", "--no-baseline", "--quiet", "--out", str(out)]

    broken = tmp_path / "planted-broken.yml"  # fails at each evaluation: two "up" series match one to many
    rule = "      - alert: PlantedManyToMany\n        expr: up * on() group_left up\n"
    broken.write_text(f"groups:\n  - name: planted\n    rules:\n{rule}")
    jobs = {"sim": [target], "silent": [silent]}
    with running(tmp_path / "prometheus", jobs, rules=[RULES, broken]) as prom:
        with log_path.open("w") as log:
            child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:

            def lingering() -> bool:  # printed once result.json is written, the final values served
                if child.poll() is not None:
                    pytest.fail(f"mw-sim exited {child.returncode}: {log_path.read_text()[-3000:]}")
                return "serving the run's final metrics" in log_path.read_text()

            prom.until("the simulation ran and wrote result.json", lingering)
            result = json.loads((out / "result.json").read_text())
            cached = result["runs"]["cached"]
            assert cached["hit_ratio"]["window"] == [0, 150], "the ratio's window is the whole run"
            want = expected_counts(result)
            prom.until(
                "a scrape of the run's final values",
                lambda: prom.scalar('sum(mw_hits_total{job="sim"})') == want["l0"] + want["l1"] + want["l2"],
            )
            assert scrape_mismatches(prom, "sim", result) == []

            # The check fails on a wrong expected value and on a run that serves no metrics.
            planted = copy.deepcopy(result)
            planted["runs"]["cached"]["telemetry_truth"]["counters"]["l1_hits"]["runtime"] += 1
            assert [p.split(":")[0] for p in scrape_mismatches(prom, "sim", planted)] == ["mw_hits_total{tier='l1'}"]
            planted = copy.deepcopy(result)
            planted["runs"]["cached"]["hit_ratio"]["mw_hit_ratio"] += 10 * RATIO_TOLERANCE
            assert len(scrape_mismatches(prom, "sim", planted)) == 2, "the query and the gauge"
            assert len(scrape_mismatches(prom, "silent", result)) == 6, "no data: every comparison fails"

            # The scraper saw the run progress.
            l0 = raw_samples(prom, 'mw_hits_total{job="sim",tier="l0"}')
            assert any(0 < v < want["l0"] for v in l0), f"no scrape saw the run between its start and end: {l0}"

            prom.more_scrapes("sim")  # every rate() window then holds two samples or more
            # These scrapes came after result.json, so after the agents closed: a live collector would show an
            # empty L0 and no task TTL limits now, the frozen one shows the run's last values.
            assert raw_samples(prom, 'mw_l0_items{job="sim"}')[-1] > 0
            assert panels_without_data(prom, instance_regex(target)) == []
            every_query = sum(len(exprs) for exprs in panel_queries().values())
            assert len(panels_without_data(prom, instance_regex(silent))) == every_query
            assert unhealthy_rules(prom) == [], "alert rules that failed to evaluate on the run's series"
            assert unhealthy_rules(prom, broken) == ["PlantedManyToMany"], "the health check can fail"

            drawn = render(prom, tmp_path / "png", instance_regex(target))
            assert drawn.returncode == 0, drawn.stdout + drawn.stderr
            pngs = sorted((tmp_path / "png").glob("panel-*.png"))
            assert len(pngs) == len(panel_queries()), [p.name for p in pngs]
            for png in pngs:
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, png
            nothing = render(prom, tmp_path / "png-silent", instance_regex(silent))
            assert nothing.returncode == 1 and "no data for" in nothing.stderr, nothing.stdout + nothing.stderr
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # ends the linger; the run's exit code stands
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(30)
    assert child.returncode == 0, log_path.read_text()[-3000:]
