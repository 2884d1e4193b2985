"""The verdict fails when it should: each deliberately broken configuration fails the matching check, and only because
of the break (the same workload with the configuration intact passes that check)."""

from __future__ import annotations

from simhelpers import Run, check, failed

# Agents that touch more distinct items than the L0 bound in a few minutes: no focus, a fast reader, a long tail.
WIDE_READERS = {"reads_per_agent_s": 6.0, "focus_fraction": 0.0, "zipf_alpha": 0.9}


def test_staging_synthetic_passes_when_small(simulate: Run) -> None:
    result = simulate("staging-synthetic", baseline=True)
    assert result["verdict"]["passed"], failed(result)
    assert result["mlt"]["reduction"] > 0.5


def test_l0_bound_off_fails_l0_bounded(simulate: Run) -> None:
    intact = simulate("staging-synthetic", items=WIDE_READERS)
    assert check(intact, "l0_bounded")["passed"]
    broken = simulate("staging-synthetic", items=WIDE_READERS, overrides={"l0_max_items": 10**9})
    row = check(broken, "l0_bounded")
    assert not row["passed"]
    assert row["shortfall"].startswith("+") and "items" in row["shortfall"]
    assert broken["runs"]["cached"]["l0"]["max_items"] > broken["runs"]["cached"]["l0"]["bound_items"]


def test_negative_cache_off_fails_no_db_stampede(simulate: Run) -> None:
    intact = simulate("hot-key-herd")
    assert check(intact, "no_db_stampede")["passed"]
    broken = simulate("hot-key-herd", overrides={"negative_cache": False})
    assert not check(broken, "no_db_stampede")["passed"]
    loads = broken["runs"]["cached"]["loads"]
    assert loads["max_loads_absent_keys"] > 1
    assert loads["max_loads_present_keys"] == 1, "only the absent keys should herd"


def test_stampede_protection_off_fails_no_db_stampede(simulate: Run) -> None:
    broken = simulate("hot-key-herd", overrides={"stampede_protection": False})
    row = check(broken, "no_db_stampede")
    assert not row["passed"]
    assert broken["runs"]["cached"]["loads"]["max_loads_present_keys"] > 1
    assert row["shortfall"].endswith("loads")


def test_double_prefixing_writer_fails_no_double_prefix(simulate: Run) -> None:
    broken = simulate("staging-synthetic", faults={"double_prefix_writer": True, "every_s": 30.0})
    assert failed(broken) == {"no_double_prefix"}
    found = broken["runs"]["cached"]["double_prefix"]
    assert found["l2_keys"] > 0
    assert found["log_lines"] > 0
    assert all(k.startswith("global:item:global:item:") for k in found["l2_examples"])


def test_running_ttl_too_long_fails_running_ttl(simulate: Run) -> None:
    ttls = {"running": 600.0}
    broken = simulate("task-churn", runtime={"task_ttls_s": ttls})
    row = check(broken, "running_ttl")
    assert not row["passed"]
    assert row["shortfall"].startswith("+")


def test_hit_ratio_below_target_fails_with_the_margin(simulate: Run) -> None:
    result = simulate("staging-synthetic", targets={"hit_ratio_week1": 0.999})
    row = check(result, "hit_ratio_week1")
    assert not row["passed"]
    assert float(row["shortfall"]) < 0
