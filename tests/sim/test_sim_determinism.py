"""The same seed gives the same numbers on the embedded backend; another seed does not."""

from __future__ import annotations

from typing import Any

from simhelpers import Run, small


def numbers(result: dict[str, Any]) -> dict[str, Any]:
    """Everything but the wall-clock figures and the run's namespace (unique per run by design: no run sees another's
    keys)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("wall", "namespace")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(result)  # type: ignore[no-any-return]


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """The paths where two results differ, with both values: what a failure must show to be diagnosed."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only on one side" for k in a.keys() ^ b.keys()]
        for k in a.keys() & b.keys():
            out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:120]} != {str(b)[:120]}"]


def test_same_seed_same_numbers(simulate: Run) -> None:
    first = simulate("staging-synthetic", baseline=True, churn={"every_s": 60.0}, bursts={"every_s": 90.0})
    second = simulate("staging-synthetic", baseline=True, churn={"every_s": 60.0}, bursts={"every_s": 90.0})
    assert first["deterministic"]
    diff = differences(numbers(first), numbers(second))
    assert not diff, "\n".join(diff[:40])
    assert first["runs"]["cached"]["requests"]["total"] > 1000


def test_other_seed_other_numbers(simulate: Run) -> None:
    first = simulate("hot-key-herd")
    other = simulate("hot-key-herd", run={"seed": 8})
    assert numbers(first)["runs"]["cached"]["series"] != numbers(other)["runs"]["cached"]["series"]


def test_realtime_mode_runs_on_the_wall_clock() -> None:
    from simulations.backends import Backend
    from simulations.runner import run_scenario

    scenario = small("hot-key-herd", run={"agents": 4, "duration_s": 20.0, "warmup_s": 2.0})
    result = run_scenario(scenario, Backend("embedded"), realtime=0.05, baseline=False)
    assert result["params"]["realtime"] == 0.05
    assert not result["deterministic"]
    assert result["runs"]["cached"]["requests"]["total"] > 0
    assert result["runs"]["cached"]["wall"]["simulate_s"] >= 20 * 0.05 * 0.9
