"""Helpers of the simulator tests: small runs of the bundled scenarios and the verdict rows they produce."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulations.scenario import Scenario, load_scenario

Run = Callable[..., dict[str, Any]]


def small(name: str, **sections: dict[str, Any]) -> Scenario:
    """A bundled scenario cut down to a dozen agents and four simulated minutes (``sections`` override tables)."""
    scenario = load_scenario(name)
    run = {"agents": 12, "duration_s": 240.0, "warmup_s": 60.0, "sample_s": 20.0, **sections.pop("run", {})}
    return scenario.with_overrides(run=run, **sections)


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    """The verdict row of one check."""
    for row in result["verdict"]["checks"]:
        if row["name"] == name:
            return row  # type: ignore[no-any-return]
    raise AssertionError(f"no check {name!r} in {[c['name'] for c in result['verdict']['checks']]}")


def failed(result: dict[str, Any]) -> set[str]:
    return {c["name"] for c in result["verdict"]["checks"] if not c["passed"]}
