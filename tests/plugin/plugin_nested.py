"""Helpers for nested pytest runs (pytester) shared by the plugin's tests."""

from __future__ import annotations

import pytest

from pytest_mw.servers import ServerSpec

UNREACHABLE = "redis://127.0.0.1:1/0"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Nested run without Hypothesis' plugin (its setup costs half a second per run) and without a cache dir."""
    return pytester.runpytest("-p", "no:hypothesispytest", "-p", "no:cacheprovider", *args)


def servers(redis_spec: ServerSpec, postgres_spec: ServerSpec) -> list[str]:
    """Options pointing a nested run at the session's process servers, strictly."""
    return [
        "--mw-server-provider", "noproc",
        "--mw-redis-url", redis_spec.url,
        "--mw-postgres-dsn", postgres_spec.url,
        "--mw-require-servers",
    ]  # fmt: skip
