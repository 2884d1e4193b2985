"""The Mw fixtures as a user meets them (nested pytest runs): backends, config, clock, factory, cleanup, skip/error."""

from __future__ import annotations

import pytest
import redis
from plugin_nested import UNREACHABLE, run, servers

from pytest_mw.servers import ServerSpec


def test_mw_is_a_ready_manager_on_fakeredis_and_sqlite(pytester: pytest.Pytester) -> None:
    record = pytester.path / "seen.txt"
    pytester.makepyfile(
        f"""
import pathlib
from mw import MwManager

def test_mw(mw, mw_config, mw_backend):
    assert isinstance(mw, MwManager) and mw.organ_id == "test-agent"
    assert mw_backend == "fakeredis"
    assert mw.config is mw_config
    assert mw_config.redis_url is None and mw_config.mlt_dsn is None
    assert mw_config.namespace.startswith("mwt:")
    assert mw.l2.describe() == "fakeredis (embedded)"
    mw.set_global_item_typed("doc", "s", "1", {{"v": 1}})
    assert mw.get_item_typed("doc", "s", "1") == {{"v": 1}}
    pathlib.Path({str(record)!r}).write_text(mw_config.namespace)

def test_namespaces_differ(mw_config, mw):
    assert mw.get_item_typed("doc", "s", "1") is None, "a fresh namespace per test"
"""
    )
    run(pytester).assert_outcomes(passed=2)
    import fakeredis

    from mw.tiers.l2 import embedded_server

    client = fakeredis.FakeRedis(server=embedded_server())
    assert list(client.scan_iter(match=record.read_text() + ":*")) == [], "the test's fakeredis keys were deleted"


def test_mw_is_closed_and_clusters_released_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
from mw import cluster

seen = {}

def test_use(mw, mw_factory):
    seen["managers"] = [mw, mw_factory("other")]
    seen["cluster"] = mw.cluster
    mw.set_item("note", 1)

def test_after():
    a, b = seen["managers"]
    assert len(a.l0) == 0 and not list(a.node.l0s), "managers closed: L0 dropped and unregistered"
    assert seen["cluster"].closed, "mw.close_all() ran"
    assert not cluster._clusters
"""
    )
    run(pytester).assert_outcomes(passed=2)


def test_mw_factory_agents_share_l1_l2_and_mlt(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_share(mw_factory):
    a, b = mw_factory("a"), mw_factory("b")
    far = mw_factory("c", node="node-2")
    a.set_global_item_typed("doc", "s", "1", "v")
    assert b.get_item_typed("doc", "s", "1") == "v"
    assert b.telemetry.l1_hits == 1, "same node: L1"
    assert far.get_item_typed("doc", "s", "1") == "v"
    assert far.telemetry.l2_hits == 1, "another node: L2"
    a.mlt.put_task({"id": "t1", "status": "queued"})
    assert far.get_task("t1")["status"] == "queued", "one Mlt"
    assert mw_factory.managers == [a, b, far]

def test_changes_and_clocks(mw_factory, mw_clock):
    a = mw_factory("a", l1_ttl_s=5)
    assert a.config.l1_ttl_s == 5 and a.clock is mw_clock
    assert mw_factory("r", real_clock=True).clock is not mw_clock
"""
    )
    run(pytester).assert_outcomes(passed=2)


def test_mw_factory_from_env_reads_mw_variables_now(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_env(mw_factory, mw_config, monkeypatch):
    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "30")
    monkeypatch.setenv("MW_REDIS_URL", "redis://example.invalid:6379/0")
    hermetic = mw_factory("a")
    configured = mw_factory("b", from_env=True, ttl_jitter=0)
    assert hermetic.config.task_ttl_s("running") == 10, "mw_config ignores the environment"
    assert configured.config.task_ttl_s("running") == 30
    assert configured.config.redis_url == mw_config.redis_url, "the backend stays the test's"
    assert configured.cache_task_row({"id": 1, "status": "running"}) == 30
"""
    )
    run(pytester).assert_outcomes(passed=1)


def test_mw_clock_steps_expiry_without_sleeping(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import time
from mw import ManualClock

def test_clock(mw, mw_clock):
    assert isinstance(mw_clock, ManualClock) and mw.clock is mw_clock
    assert abs(mw_clock() - time.time()) < 60
    mw.set_global_item_typed("doc", "s", "1", "v", ttl_s=10)
    mw_clock.advance(9.5)
    assert mw.get_item_typed("doc", "s", "1") == "v"
    mw_clock.advance(1)
    assert mw.get_item_typed("doc", "s", "1") is None
"""
    )
    run(pytester).assert_outcomes(passed=1)


def test_mw_config_marker_changes_fields_and_rejects_unknown_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

pytestmark = pytest.mark.mw_config(l1_ttl_s=7, ttl_jitter=0)

@pytest.mark.mw_config(l1_ttl_s=5)
def test_closest_wins(mw_config):
    assert mw_config.l1_ttl_s == 5 and mw_config.ttl_jitter == 0

def test_module_marker(mw):
    assert mw.config.l1_ttl_s == 7

@pytest.mark.mw_config(no_such_setting=1)
def test_unknown(mw_config):
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ConfigError*no_such_setting*"])


def test_backend_option_ini_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

def test_default(mw_backend):
    assert mw_backend == pytest.EXPECTED

@pytest.mark.mw_backend("fakeredis")
def test_marker_wins(mw_backend):
    assert mw_backend == "fakeredis"
"""
    )
    pytester.makeconftest(
        """
import pytest
def pytest_configure(config):
    pytest.EXPECTED = config.getoption("mw_backend") or config.getini("mw_backend") or "fakeredis"
"""
    )
    run(pytester).assert_outcomes(passed=2)
    pytester.makeini("[pytest]\nmw_backend = redis\n")
    run(pytester).assert_outcomes(passed=2)
    run(pytester, "--mw-backend", "fakeredis").assert_outcomes(passed=2)


def test_bad_backend_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mw_backend("memcached")
def test_x(mw):
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_x: @pytest.mark.mw_backend('memcached'): name one or more of fakeredis, redis, redis-tls, "
            "redis-cluster, redis-sentinel"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    pytester.makeini("[pytest]\nmw_backend = memcached\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mw_backend = 'memcached': choose one of fakeredis, redis*"])


def test_redis_backend_without_a_server_skips_and_strict_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_real(mw):
    mw.set_global_item_typed("doc", "s", "1", 1)
"""
    )
    args = ["-rs", "--mw-backend", "redis", "--mw-server-provider", "noproc", "--mw-redis-url", UNREACHABLE]
    result = run(pytester, *args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*mw: redis server unavailable: noproc: cannot reach Redis*"])
    result = run(pytester, *args, "--mw-require-servers")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*mw: redis server unavailable*--mw-require-servers is set*"])


def test_redis_backend_uses_real_servers_with_per_test_namespace_and_database(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    record = pytester.path / "seen.txt"
    pytester.makepyfile(
        f"""
import pathlib, psycopg
import pytest

def test_real(mw, mw_config, mw_redis_url, mw_namespace, mw_redis, mw_postgres_dsn, request):
    assert mw_config.redis_url == mw_redis_url == {redis_proc_server.url!r}
    assert mw_config.namespace == mw_namespace
    assert mw_config.mlt_dsn == mw_postgres_dsn
    assert request.node.get_closest_marker("mw_real_servers") is not None
    mw.set_global_item_typed("doc", "s", "1", "v", ttl_s=60)
    mw.mlt.put_task({{"id": "t1", "status": "running"}})
    assert mw.get_task("t1")["status"] == "running"
    assert mw_redis.exists(mw_namespace + ":global:item:doc:s:1") == 1
    pathlib.Path({str(record)!r}).write_text(mw_namespace + ":")

@pytest.mark.mw_backend("redis", mlt="sqlite")
def test_sqlite_mlt(mw_config):
    assert mw_config.redis_url is not None and mw_config.mlt_dsn is None
"""
    )
    result = run(pytester, "--mw-backend", "redis", *servers(redis_proc_server, postgres_proc_server))
    result.assert_outcomes(passed=2)
    with redis.Redis.from_url(redis_proc_server.url) as client:
        assert list(client.scan_iter(match=record.read_text() + "*")) == []


def test_marker_with_several_backends_runs_once_per_backend(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mw_backend("fakeredis", "redis")
def test_both(mw, mw_backend):
    mw.set_global_item_typed("doc", "s", "1", mw_backend)
    assert mw.get_item_typed("doc", "s", "1") == mw_backend
    assert (mw.config.redis_url is None) == (mw_backend == "fakeredis")
"""
    )
    result = run(pytester, "-v", *servers(redis_proc_server, postgres_proc_server))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_both?fakeredis? PASSED*", "*test_both?redis? PASSED*"])
    run(pytester, "-m", "not mw_real_servers").assert_outcomes(passed=1, deselected=1)


def test_report_header_shows_backend_and_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    result.stdout.fnmatch_lines(
        ["mw backend: L2 fakeredis (embedded), Mlt sqlite in memory", "mw checks: strict keys=False, check logs=False"]
    )
    result = run(pytester, "--mw-backend", "redis", "--mw-strict-keys", "--mw-check-logs", "--mw-mlt", "sqlite")
    result.stdout.fnmatch_lines(
        [
            "mw backend: L2 redis (real server, see 'mw redis'), Mlt sqlite",
            "mw checks: strict keys=True, check logs=True",
        ]
    )


def test_real_backend_cleanup_leaves_other_keys(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    with redis.Redis.from_url(redis_proc_server.url) as client:
        client.set("someone-else:global:item:doc:s:1", b"keep")
        pytester.makepyfile(
            """
def test_write(mw):
    mw.set_global_item_typed("doc", "s", "1", "mine")
"""
        )
        result = run(pytester, "--mw-backend", "redis", *servers(redis_proc_server, postgres_proc_server))
        result.assert_outcomes(passed=1)
        assert client.get("someone-else:global:item:doc:s:1") == b"keep"
        client.delete("someone-else:global:item:doc:s:1")
