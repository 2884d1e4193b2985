"""Workloads that look like production: log-normal item sizes, incompressible content, an informational verdict, and
prewarming judged on the hot keys (issue 10, item 5)."""

from __future__ import annotations

import json
import random
import statistics
import zlib
from pathlib import Path
from typing import Any

import pytest
from simhelpers import Run, check, failed

from simulations.backends import Backend
from simulations.cli import EXIT_FAIL, EXIT_PASS, main
from simulations.distributions import item_sizes
from simulations.report import markdown
from simulations.runner import HOT_FIGURES, run_scenario
from simulations.scenario import (
    VALUE_BYTES_CAP,
    ItemsSpec,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from simulations.verdict import PREWARM_MIN_GAIN
from simulations.workloads import Catalog

PRODUCTION = Path("simulations/scenarios/production-like.toml")


# --- item sizes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 7, 42])
@pytest.mark.parametrize(("median", "p99"), [(1024, 65536), (200, 2000), (5000, 5000)])
def test_lognormal_sizes_have_the_median_and_p99_asked(seed: int, median: int, p99: int) -> None:
    spec = ItemsSpec(value_dist="lognormal", value_bytes_median=median, value_bytes_p99=p99)
    sizes = sorted(item_sizes(spec, 40_000, random.Random(seed)))
    assert statistics.median(sizes) == pytest.approx(median, rel=0.05)
    assert sizes[int(0.99 * len(sizes))] == pytest.approx(p99, rel=0.10)
    assert sizes[0] >= 1 and sizes[-1] <= VALUE_BYTES_CAP


def test_uniform_sizes_are_the_draws_they_always_were() -> None:
    """The default keeps every other scenario's catalog (and so its results) as it was: one randint per item."""
    spec = ItemsSpec()
    rng = random.Random("42:catalog")
    before = [rng.randint(spec.value_bytes_min, spec.value_bytes_max) for _ in range(5000)]
    assert list(Catalog(spec, 42).sizes) == before
    assert Catalog(spec, 42).value("i3", 2) == "2|" + "x" * before[3]


def test_random_content_does_not_compress_to_nothing() -> None:
    """Repeated characters compress to a few bytes, so the tiers would hold nothing of a 64 KiB value; the seeded
    base64 content keeps about three quarters of it, as dense production JSON would."""
    spec = ItemsSpec(catalog=200, value_dist="lognormal", value_content="random")
    catalog = Catalog(spec, 42)
    big = max(catalog.ids, key=lambda i: catalog.sizes[catalog.index[i]])
    value = catalog.value(big, 1)
    assert len(value) > 10_000
    assert len(zlib.compress(value.encode(), 1)) > 0.7 * len(value)
    assert len(zlib.compress(("x" * len(value)).encode(), 1)) < 0.01 * len(value)
    assert value.startswith("1|") and catalog.value(big, 2).startswith("2|")
    assert catalog.value(big, 1) == value, "a value is a function of the item and its version"
    assert catalog.value(big, 2)[2:] != value[2:]
    assert not catalog.keeps_values and catalog.truth_value(value) is None


@pytest.mark.parametrize(
    ("items", "named"),
    [
        ({"value_dist": "pareto"}, "value_dist = 'pareto'"),
        ({"value_content": "zeros"}, "value_content = 'zeros'"),
        ({"value_dist": "lognormal", "value_bytes_median": 4096, "value_bytes_p99": 1024}, "value_bytes_median = 4096"),
        (
            {"value_dist": "lognormal", "value_bytes_p99": VALUE_BYTES_CAP + 1},
            f"value_bytes_p99 = {VALUE_BYTES_CAP + 1}",
        ),
        ({"value_dist": "lognormal", "value_bytes_median": 0}, "value_bytes_median = 0"),
        ({"value_dist": "lognormal", "value_bytes_median": 1.5}, "value_bytes_median = 1.5"),
        ({"value_bytes_min": 3000}, "value_bytes_min = 3000"),
        ({"value_bytes_max": True}, "value_bytes_max = True"),
    ],
)
def test_bad_size_settings_are_scenario_errors_naming_the_value(items: dict[str, Any], named: str) -> None:
    with pytest.raises(ScenarioError, match="items") as err:
        parse_scenario({"name": "bad", "items": items}, "bad.toml")
    assert named in str(err.value)
    assert "bad.toml" in str(err.value)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"informational": "yes"}, "informational = 'yes'"),
        ({"prewarm": {"hot_keys": 0}}, "hot_keys = 0"),
    ],
)
def test_bad_informational_and_hot_keys_are_scenario_errors(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario({"name": "bad", **data}, "bad.toml")
    assert named in str(err.value)


# --- the production-like scenario ------------------------------------------------------------------------------------
def test_production_like_parses_as_asked() -> None:
    s = load_scenario("production-like")
    assert s.informational
    assert (s.items.catalog, s.items.zipf_alpha, s.items.write_fraction) == (200_000, 0.8, 0.03)
    assert (s.items.value_dist, s.items.value_bytes_median, s.items.value_bytes_p99) == ("lognormal", 1024, 65536)
    assert s.items.value_content == "random"
    assert s.config(environ={}).l2_ttl_s == 600 and s.run.duration_s == 3600
    assert "informational" in s.description.lower()
    assert not load_scenario("staging-synthetic").informational


def _shrunk_production(**run: Any) -> Any:
    s = load_scenario("production-like")
    return s.with_overrides(
        run={"agents": 8, "duration_s": 240.0, "warmup_s": 60.0, "sample_s": 20.0, **run},
        items={"catalog": 2000, "absent_pool": 50},
    )


def test_shrunk_production_like_runs_and_judges_every_check() -> None:
    result = run_scenario(_shrunk_production(), Backend("embedded"), baseline=False)
    assert result["informational"] is True
    cached = result["runs"]["cached"]
    assert cached["requests"]["outcomes"]["writes"] > 0
    assert cached["stale"]["checked"]["item"] > 0 and cached["stale"]["violations"] == 0
    assert not {"no_stale_reads", "l0_bounded", "telemetry_truth", "no_db_stampede"} & failed(result)
    assert cached["l0"]["max_bytes"] > 100_000, "values of a KiB and more fill L0 by bytes, not by a few bytes each"
    report = markdown(result, {"hit_ratio": "a", "mlt_qps": "b", "l0_size": "c", "loads_per_expiry": "d"})
    assert "Informational scenario" in report


def _production_file(tmp_path: Path, *, informational: bool) -> Path:
    """production-like with 2,000 items and a defect that fails no_stale_reads (writers tell no cache)."""
    text = PRODUCTION.read_text().replace("catalog = 200_000", "catalog = 2_000")
    if not informational:
        text = text.replace("informational = true", "informational = false")
    path = tmp_path / "production-small.toml"
    path.write_text(text + "\n[defects]\nskip_invalidation = true\n")
    return path


@pytest.mark.parametrize(("informational", "code"), [(True, EXIT_PASS), (False, EXIT_FAIL)])
def test_an_informational_verdict_keeps_its_failures_and_exits_0(
    tmp_path: Path, informational: bool, code: int
) -> None:
    scenario = _production_file(tmp_path, informational=informational)
    out = tmp_path / "out"
    argv = ["run", str(scenario), "--agents", "8", "--duration", "240", "--warmup", "60", "--no-baseline", "--quiet"]
    assert main([*argv, "--out", str(out)]) == code
    result = json.loads((out / "result.json").read_text())
    assert not result["verdict"]["passed"]
    assert "no_stale_reads" in failed(result)
    assert result.get("informational", False) is informational
    title = (out / "report.md").read_text().splitlines()[0]
    assert title.endswith("FAIL (informational)" if informational else "FAIL")


# --- prewarming judged on the hot keys -----------------------------------------------------------------------------
PREWARM_SMALL: dict[str, Any] = {
    "run": {"agents": 12, "duration_s": 400.0, "warmup_s": 60.0},
    "runtime": {"l1_ttl_s": 30, "l2_ttl_s": 60},
    "prewarm": {"every_s": 20},
}
"""week2-prewarm shrunk: hot keys expire every minute, and every agent prewarms every 20 s."""


def test_prewarm_effect_has_the_hot_keys_figures_and_the_gain_passes(simulate: Run) -> None:
    result = simulate("week2-prewarm", **PREWARM_SMALL)
    effect = result["prewarm_effect"]
    assert effect["hot_keys"]["n"] == 10 and len(effect["hot_keys"]["keys"]) == 10
    for run in ("with", "without"):
        assert set(effect["hot"][run]) == set(HOT_FIGURES)
    w, wo = effect["hot"]["with"], effect["hot"]["without"]
    assert wo["read_loads"] > 0 and wo["prewarm_loads"] == 0
    assert w["prewarm_loads"] > 0
    assert w["mlt_loads"] == w["read_loads"] + w["prewarm_loads"]
    assert effect["hot_read_loads_fewer"] >= PREWARM_MIN_GAIN
    assert w["hit_ratio"] >= wo["hit_ratio"]
    row = check(result, "prewarm_gain")
    assert row["passed"], row
    # The no_prewarm run is judged on the cached run's hot keys, not its own.
    assert result["runs"]["no_prewarm"]["hot_keys"]["keys"] == effect["hot_keys"]["keys"]
    report = markdown(result, {"hit_ratio": "a", "mlt_qps": "b", "l0_size": "c", "loads_per_expiry": "d"})
    assert "Mlt loads on the read path" in report and "hot keys" in report


def test_gain_row_fails_when_prewarming_cannot_load(simulate: Run) -> None:
    """The runtime's own setting: MW_PREWARM_MAX_PER_CALL=0 lets prewarm() refill L1 from L2 but never load a key
    L2 is about to lose, so the hot keys' expiries fall on readers as without prewarming."""
    result = simulate("week2-prewarm", overrides={"prewarm_max_per_call": 0}, **PREWARM_SMALL)
    effect = result["prewarm_effect"]
    assert effect["hot"]["with"]["prewarm_loads"] == 0
    assert effect["hot"]["without"]["read_loads"] > 0
    row = check(result, "prewarm_gain")
    assert not row["passed"] and row["shortfall"].startswith("-"), row
    assert "prewarm_gain" in failed(result)


def test_gain_row_fails_when_no_hot_key_ever_expires(simulate: Run) -> None:
    """A comparison in which the hot keys never reach their expiry (the old week2-prewarm: L2 keeps copies longer
    than the run) cannot show a gain: the row says so and fails instead of passing on nothing."""
    result = simulate("week2-prewarm", runtime={"l2_ttl_s": 3600})
    assert result["prewarm_effect"]["hot"]["without"]["read_loads"] == 0
    row = check(result, "prewarm_gain")
    assert not row["passed"] and row["shortfall"].startswith("n/a"), row
    report = markdown(result, {"hit_ratio": "a", "mlt_qps": "b", "l0_size": "c", "loads_per_expiry": "d"})
    assert "| n/a |" in report


def test_no_gain_row_without_a_comparison(simulate: Run) -> None:
    result = simulate("staging-synthetic", run={"duration_s": 120.0, "warmup_s": 30.0})
    assert "prewarm_effect" not in result
    assert "prewarm_gain" not in {c["name"] for c in result["verdict"]["checks"]}
    assert "hot_keys" not in result["runs"]["cached"]
