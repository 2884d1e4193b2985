"""The documented pytest-asyncio setup (docs/plugin.md) works with the mw fixtures, in strict and in auto mode.

The nested file uses the runtime's ``*_async`` methods from async tests and from an async fixture, on both backends,
and two tests that share one module-scoped event loop (``loop_scope="module"``) with the function-scoped fixtures.
"""

from __future__ import annotations

import pytest

from pytest_mw.servers import ServerSpec

pytest.importorskip("pytest_asyncio")

ASYNC_TESTS = """
import asyncio
import pytest
import pytest_asyncio

MARK = {mark}
LOOPS = []


@pytest_asyncio.fixture
async def warmed(mw):
    calls = []

    async def load():
        calls.append(1)
        return {{"v": 1}}

    assert await mw.get_item_typed_async("doc", "s", "1", loader=load) == {{"v": 1}}
    return calls


@pytest.mark.mw_backend("fakeredis", "redis")
@MARK
async def test_reads_through_once(mw, warmed, mw_redis, mw_namespace):
    async def load():
        raise AssertionError("loaded twice")

    assert await mw.get_item_typed_async("doc", "s", "1", loader=load) == {{"v": 1}}
    assert warmed == [1]
    assert mw_redis.exists(f"{{mw_namespace}}:global:item:doc:s:1") == 1
    assert await mw.del_global_item_typed_async("doc", "s", "1")
    assert mw_redis.exists(f"{{mw_namespace}}:global:item:doc:s:1") == 0


@pytest.mark.mw_backend("fakeredis", "redis")
@MARK
async def test_task_rows(mw):
    mw.mlt.put_task({{"id": 7, "status": "running"}})
    assert (await mw.get_task_async(7))["status"] == "running"
    await mw.update_task_status_async(7, "completed")
    assert (await mw.get_task_async(7))["status"] == "completed"


@pytest.mark.mw_backend("redis")
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("n", [1, 2])
async def test_one_loop_for_the_module(n, mw):
    LOOPS.append(asyncio.get_running_loop())
    assert len(set(LOOPS)) == 1
    assert await mw.get_item_typed_async("doc", "s", "m", loader=lambda: n) == n
"""

MODES = {
    "strict": ("pytest.mark.asyncio", "strict"),
    "auto": ("lambda test: test", "auto"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_async_tests_with_the_mw_fixtures(
    pytester: pytest.Pytester, mode: str, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    mark, ini_mode = MODES[mode]
    pytester.makeini(f"[pytest]\nasyncio_mode = {ini_mode}\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(ASYNC_TESTS.format(mark=mark))
    result = pytester.runpytest(
        "-p", "no:hypothesispytest",
        "--mw-server-provider", "noproc",
        "--mw-redis-url", redis_proc_server.url,
        "--mw-postgres-dsn", postgres_proc_server.url,
        "--mw-require-servers",
    )  # fmt: skip
    result.assert_outcomes(passed=6)
    result.stdout.re_match_lines([rf"asyncio: mode=(?i:.*{ini_mode})"])  # "Mode.AUTO" or "auto", by Python version


@pytest.mark.guard("pytest-asyncio's own strict mode, as docs/plugin.md describes it")
def test_strict_mode_needs_the_marker(pytester: pytest.Pytester) -> None:
    """Without ``@pytest.mark.asyncio`` (or auto mode) an async test does not run: the docs' first pitfall."""
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
async def test_unmarked(mw):
    await mw.get_task_async(1)
"""
    )
    result = pytester.runpytest("-p", "no:hypothesispytest")
    assert result.parseoutcomes().get("passed", 0) == 0
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
