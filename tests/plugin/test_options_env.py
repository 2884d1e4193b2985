"""MW_TEST_BACKEND / MW_TEST_SERVER_PROVIDER: a CI matrix picks the backend without editing the test command.

Precedence, each step checked here: marker (or factory argument) > command line > these variables > ini > default.
"""

from __future__ import annotations

import pytest

UNREACHABLE = "redis://127.0.0.1:1/0"

BACKENDS_SEEN = """
import pytest

def test_unmarked(mw_backend):
    assert mw_backend == {unmarked!r}

@pytest.mark.mw_backend("fakeredis")
def test_marked(mw_backend):
    assert mw_backend == "fakeredis"
"""

PROVIDER_SEEN = """
def test_provider(pytestconfig):
    from pytest_mw.options import server_options
    assert server_options(pytestconfig).provider == {provider!r}
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Nested run without Hypothesis' plugin (its setup costs about half a second per run)."""
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


def test_backend_variable_beats_ini_and_loses_to_a_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_BACKEND", "redis")
    pytester.makeini("[pytest]\nmw_backend = fakeredis\n")
    pytester.makepyfile(BACKENDS_SEEN.format(unmarked="redis"))
    result = run(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["mw backend: L2 redis (real server*"])


def test_command_line_beats_the_backend_variable(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TEST_BACKEND", "redis")
    pytester.makepyfile(BACKENDS_SEEN.format(unmarked="fakeredis"))
    run(pytester, "--mw-backend", "fakeredis").assert_outcomes(passed=2)
    pytester.makepyfile(BACKENDS_SEEN.format(unmarked="redis"))
    run(pytester).assert_outcomes(passed=2)


def test_provider_variable_beats_ini_and_loses_to_the_command_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_SERVER_PROVIDER", "noproc")
    pytester.makeini("[pytest]\nmw_server_provider = process\n")
    pytester.makepyfile(PROVIDER_SEEN.format(provider="noproc"))
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mw servers: provider=noproc, require servers=False"])
    pytester.makepyfile(PROVIDER_SEEN.format(provider="container"))
    run(pytester, "--mw-server-provider", "container").assert_outcomes(passed=1)


def test_provider_variable_reaches_the_server_fixtures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` would use the URL given (noproc, unreachable here); the variable says process, so a server starts."""
    monkeypatch.setenv("MW_TEST_SERVER_PROVIDER", "process")
    pytester.makepyfile(
        """
def test_needs_redis(mw_redis_server, mw_redis_url):
    import redis
    with redis.Redis.from_url(mw_redis_url) as client:
        client.ping()
    assert mw_redis_server.provider == "process"
"""
    )
    run(pytester, "--mw-redis-url", UNREACHABLE, "--mw-require-servers").assert_outcomes(passed=1)


def test_factory_argument_beats_the_provider_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_SERVER_PROVIDER", "process")
    pytester.makeconftest(
        "from pytest_mw.servers import factories\npinned = factories.redis_server(provider='noproc')\n"
    )
    pytester.makepyfile(
        f"""
import pytest

def test_pinned(request):
    with pytest.raises(pytest.fail.Exception, match="noproc: cannot reach Redis"):
        request.getfixturevalue("pinned")

{PROVIDER_SEEN.format(provider="process")}
"""
    )
    run(pytester, "--mw-redis-url", UNREACHABLE, "--mw-require-servers").assert_outcomes(passed=2)


def test_empty_variable_counts_as_unset(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A matrix cell that leaves ``MW_TEST_BACKEND`` empty keeps the ini's choice; the other variable still applies."""
    monkeypatch.setenv("MW_TEST_BACKEND", "  ")
    monkeypatch.setenv("MW_TEST_SERVER_PROVIDER", "noproc")
    pytester.makeini("[pytest]\nmw_backend = redis\n")
    pytester.makepyfile(BACKENDS_SEEN.format(unmarked="redis") + PROVIDER_SEEN.format(provider="noproc"))
    run(pytester).assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("variable", "value", "choices"),
    [
        ("MW_TEST_BACKEND", "postgres", "fakeredis, redis, redis-tls, redis-cluster, redis-sentinel"),
        ("MW_TEST_SERVER_PROVIDER", "docker", "auto, process, container, noproc"),
    ],
)
def test_bad_variable_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, choices: str
) -> None:
    monkeypatch.setenv(variable, value)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{variable} = {value!r}: choose one of {choices}*"])
