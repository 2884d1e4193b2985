"""The plugin as users meet it, run in a nested pytest: options, ini values, header, skip and strict paths."""

from __future__ import annotations

import psycopg
import pytest
import redis

from pytest_mw.servers import ServerSpec

UNREACHABLE = "redis://127.0.0.1:1/0"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Nested run without Hypothesis' plugin, whose setup alone costs about half a second per run here."""
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


NEEDS_REDIS = """
def test_needs_redis(mw_redis_url):
    import redis
    with redis.Redis.from_url(mw_redis_url) as client:
        client.ping()
"""


def test_unreachable_server_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NEEDS_REDIS)
    result = run(pytester, "-rs", "--mw-server-provider", "noproc", "--mw-redis-url", UNREACHABLE)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*mw: redis server unavailable: noproc: cannot reach Redis at redis://127.0.0.1:1/0*"]
    )


def test_require_servers_turns_the_skip_into_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NEEDS_REDIS)
    result = run(pytester, "--mw-server-provider", "noproc", "--mw-redis-url", UNREACHABLE, "--mw-require-servers")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*mw: redis server unavailable: noproc: cannot reach Redis at redis://127.0.0.1:1/0*--mw-require-servers*"]
    )


def test_ini_values_work_like_the_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NEEDS_REDIS)
    pytester.makeini(
        f"[pytest]\nmw_server_provider = noproc\nmw_redis_url = {UNREACHABLE}\nmw_require_servers = true\n"
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot reach Redis at redis://127.0.0.1:1/0*--mw-require-servers is set*"])


def test_ini_false_is_respected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NEEDS_REDIS)
    pytester.makeini(
        f"[pytest]\nmw_server_provider = noproc\nmw_redis_url = {UNREACHABLE}\nmw_require_servers = false\n"
    )
    run(pytester).assert_outcomes(skipped=1)


def test_command_line_beats_ini_and_factory_argument_beats_command_line(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec
) -> None:
    pytester.makeini(f"[pytest]\nmw_server_provider = process\nmw_redis_url = {UNREACHABLE}\n")
    pytester.makeconftest(
        f"""
from pytest_mw.servers import factories
pinned = factories.redis_noproc(url={redis_proc_server.url!r})
"""
    )
    pytester.makepyfile(
        f"""
from pytest_mw.options import ServerOptions, server_options

def test_options(pytestconfig):
    assert server_options(pytestconfig) == ServerOptions(
        provider="noproc", redis_url={redis_proc_server.url!r}, require_servers=True
    )

def test_resolved_from_the_command_line(mw_redis_server):
    assert mw_redis_server.provider == "noproc"

def test_factory_argument_wins(pinned):
    assert pinned.url == {redis_proc_server.url!r}
"""
    )
    result = run(
        pytester, "--mw-server-provider", "noproc", "--mw-redis-url", redis_proc_server.url, "--mw-require-servers"
    )
    result.assert_outcomes(passed=3)


def test_bad_ini_provider_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NEEDS_REDIS)
    pytester.makeini("[pytest]\nmw_server_provider = docker\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mw_server_provider = 'docker': choose one of auto, process, container, noproc*"])


def test_report_header_shows_the_plan(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester,
        "--mw-server-provider",
        "noproc",
        "--mw-redis-url",
        "redis://:secret@127.0.0.1:1/0",
        "--mw-require-servers",
    )
    result.stdout.fnmatch_lines(
        [
            "mw servers: provider=noproc, require servers=True",
            "mw redis: noproc redis://:***@127.0.0.1:1/0",
            "mw postgres: noproc postgresql://postgres@127.0.0.1:5432/postgres",
        ]
    )
    assert "secret" not in result.stdout.str()
    result = run(pytester)
    result.stdout.fnmatch_lines(
        [
            "mw servers: provider=auto, require servers=False",
            "mw redis: container redis:7, else process redis-server",
            "mw postgres: container postgres:15, else process initdb/pg_ctl",
        ]
    )


@pytest.mark.parametrize(("strict", "outcome"), [(False, {"skipped": 1}), (True, {"errors": 1})])
def test_missing_redis_server_names_the_paths_tried(
    pytester: pytest.Pytester, strict: bool, outcome: dict[str, int]
) -> None:
    pytester.makepyfile(NEEDS_REDIS)
    args = ["-rs", "--mw-server-provider", "process", "--mw-redis-exec", "/nonexistent/redis-server"]
    result = run(pytester, *args, *(["--mw-require-servers"] if strict else []))
    result.assert_outcomes(**outcome)
    result.stdout.fnmatch_lines(["*redis-server not found; tried: /nonexistent/redis-server. Install Redis*"])


def test_real_server_marker_deselects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NEEDS_REDIS + "\ndef test_plain(): pass\n")
    run(pytester, "-m", "not mw_real_servers").assert_outcomes(passed=1, deselected=1)


def test_fixture_teardown_cleans_the_namespace_and_drops_the_database(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    record = pytester.path / "seen.txt"
    pytester.makepyfile(
        f"""
import pathlib, psycopg, redis

def test_uses_servers(mw_redis_url, mw_namespace, mw_postgres_dsn):
    with redis.Redis.from_url(mw_redis_url) as client:
        client.set(mw_namespace + ":inside", 1)
        client.set("mw-pytester-outside", 1)
    with psycopg.connect(mw_postgres_dsn) as conn:
        dbname = conn.execute("SELECT current_database()").fetchone()[0]
    pathlib.Path({str(record)!r}).write_text(mw_namespace + ":\\n" + dbname)
"""
    )
    result = run(pytester,
        "--mw-server-provider", "noproc",
        "--mw-redis-url", redis_proc_server.url,
        "--mw-postgres-dsn", postgres_proc_server.url,
        "--mw-require-servers",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    namespace, dbname = record.read_text().splitlines()
    with redis.Redis.from_url(redis_proc_server.url) as client:
        assert list(client.scan_iter(match=namespace + "*")) == []
        assert client.exists(namespace + "inside") == 0
        assert client.get("mw-pytester-outside") == b"1"
    with psycopg.connect(postgres_proc_server.url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (dbname,)).fetchone() == (0,)
