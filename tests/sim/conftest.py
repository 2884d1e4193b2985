"""Fixtures of the simulator tests: quick runs on the embedded backend."""

from __future__ import annotations

from typing import Any

import pytest
from simhelpers import Run, small

from simulations.backends import Backend
from simulations.runner import run_scenario


@pytest.fixture
def simulate() -> Run:
    """Run a small scenario on the embedded backend (no baseline unless asked); returns the result dict."""

    def go(
        name: str, *, overrides: dict[str, Any] | None = None, baseline: bool = False, **sections: Any
    ) -> dict[str, Any]:
        return run_scenario(small(name, **sections), Backend("embedded"), overrides=overrides, baseline=baseline)

    return go
