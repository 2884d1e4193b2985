"""The plugin module itself: cheap to import, assertion helpers rewritten, the downstream example green."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_nested import run

from pytest_mw.servers import ServerSpec

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "downstream"


def test_importing_the_plugin_loads_no_runtime_or_client_library() -> None:
    code = (
        "import sys, pytest_mw.plugin, pytest_mw.lint.cli\n"
        "heavy = [m for m in ('mw', 'redis', 'fakeredis', 'psycopg', 'testcontainers', 'simpy', 'ray') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_package_exports_the_helpers_lazily() -> None:
    import pytest_mw
    from pytest_mw import assertions

    assert pytest_mw.assert_ttl is assertions.assert_ttl
    assert set(pytest_mw.__all__) >= {"assert_ttl", "assert_memory_metrics", "KeyRecorder", "MwFactory"}
    with pytest.raises(AttributeError):
        pytest_mw.no_such_name  # noqa: B018


def test_assertion_helpers_are_rewritten(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
from pytest_mw import assert_tier_hits

def test_hits(mw):
    mw.get_item_typed("doc", "s", "1")
    assert_tier_hits(mw, l0=1, misses=0)
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E*AssertionError: telemetry counters differ", "E*Differing items:", "E*{'l0_hits': 0} != {'l0_hits': 1}"]
    )


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    for marker in ("mw_backend(", "mw_config(", "mw_strict_keys(", "mw_check_logs(", "mw_lint:", "mw_real_servers:"):
        result.stdout.fnmatch_lines([f"@pytest.mark.{marker}*"])
    pytester.makepyfile("import pytest\n@pytest.mark.mw_strict_keys\ndef test_x(): pass\n")
    run(pytester, "--strict-markers").assert_outcomes(passed=1)


def test_options_are_in_the_mw_group(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["mw: real Redis/PostgreSQL servers and the Mw cache:"])
    for flag in ("--mw-backend=", "--mw-mlt=", "--mw-strict-keys", "--mw-check-logs", "--mw-lint=PATH"):
        result.stdout.fnmatch_lines([f"*{flag}*"])
    for ini in ("mw_backend", "mw_mlt", "mw_strict_keys", "mw_check_logs", "mw_lint"):
        result.stdout.fnmatch_lines([f"  {ini} (*"])


def _run_example(*args: str) -> subprocess.CompletedProcess[str]:
    """The example's own tests, in the current interpreter, exactly as its users run them (nothing installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MW_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def test_downstream_example_passes(redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec) -> None:
    servers = [
        "--mw-server-provider", "noproc",
        "--mw-redis-url", redis_proc_server.url,
        "--mw-postgres-dsn", postgres_proc_server.url,
        "--mw-require-servers",
    ]  # fmt: skip
    result = _run_example(*servers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mw lint: src" in result.stdout and "strict keys=True, check logs=True" in result.stdout
    result = _run_example("--mw-backend", "redis", *servers)
    assert result.returncode == 0, result.stdout + result.stderr
