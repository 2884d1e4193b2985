"""The verdict fails when it should: each deliberately broken configuration fails the matching check, and only because
of the break (the same workload with the configuration intact passes that check)."""

from __future__ import annotations

from typing import Any

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
    broken = simulate("staging-synthetic", defects={"double_prefix_writer": True, "every_s": 30.0})
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


def test_running_ttl_judges_redis_pttl_not_only_what_the_runtime_reports(simulate: Run) -> None:
    """A PTTL read a few ms after the caching confirms the applied TTL (no real time in a seeded run's numbers); a
    PTTL beyond it (Redis keeps the row longer than the runtime said) or no expiry at all fails the check."""
    from simulations.measure import TaskTTLs
    from simulations.scenario import Targets
    from simulations.verdict import judge

    run = simulate("task-churn")["runs"]["cached"]

    def row_with(pttl_ms: int, applied_s: float) -> Any:
        ttls = TaskTTLs()
        ttls.cached("running", applied_s)
        ttls.probed("running", pttl_ms, applied_s)
        return next(c for c in judge({**run, "task_ttls": ttls.summary()}, Targets()).checks if c.name == "running_ttl")

    confirmed = row_with(9_607, 9.611)
    assert confirmed.passed and "L2 life 9.611" in confirmed.observed
    longer = row_with(600_000, 9.611)
    assert not longer.passed and longer.shortfall == "+570.000 s"
    forever = row_with(-1, 9.611)
    assert not forever.passed and forever.shortfall == "no expiry"
