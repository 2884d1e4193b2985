"""``--mw-backend redis-tls`` as a user meets it (nested runs): the ``mw`` fixtures on a TLS-only server as the
least-privilege user, a ``redis`` marker following the run's variant, ``mw_redis_admin_url`` for fault injection,
and the header naming it."""

from __future__ import annotations

import pytest
from plugin_nested import run, servers

from pytest_mw.servers import ServerSpec

pytestmark = pytest.mark.mw_real_servers


def test_redis_tls_runs_the_fixtures_on_a_tls_server_as_the_acl_user(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    pytester.makepyfile(
        """
import pytest
import redis

def test_plain_marker_follows_the_variant(mw, mw_backend, mw_redis_url, mw_redis_admin_url, mw_redis, mw_namespace):
    assert mw_backend == "redis-tls"
    assert mw.config.redis_url == mw_redis_url and mw_redis_url.startswith("rediss://mw:")
    assert mw_redis_admin_url.startswith("rediss://mw-admin:")
    mw.set_global_item_typed("doc", "s", "1", {"v": 1})
    assert mw_redis.exists(mw_namespace + ":global:item:doc:s:1") == 1
    assert mw_redis.config_get("maxmemory")  # mw_redis is the admin: it may look around
    user = redis.Redis.from_url(mw_redis_url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.config_get("*")  # the runtime's user: no admin command
    user.close()

@pytest.mark.mw_backend("redis")
def test_marked_redis(mw_backend, mw_config):
    assert mw_backend == "redis-tls" and mw_config.redis_url.startswith("rediss://")

@pytest.mark.mw_backend("fakeredis")
def test_marked_fakeredis(mw_config):
    assert mw_config.redis_url is None
"""
    )
    result = run(pytester, "--mw-backend", "redis-tls", *servers(redis_proc_server, postgres_proc_server))
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["mw backend: L2 redis-tls (a TLS-only redis-server process*"])
    assert "rediss://mw:" not in result.stdout.str() or ":***@" in result.stdout.str()


def test_a_marker_picks_redis_tls_per_test(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mw_backend("redis", "redis-tls")
def test_both(mw_backend, mw):
    scheme = "rediss://" if mw_backend == "redis-tls" else "redis://"
    assert mw.config.redis_url.startswith(scheme)
    mw.set_global_item_typed("doc", "s", "1", 1)
    assert mw.get_item_typed("doc", "s", "1") == 1
"""
    )
    result = run(pytester, "-v", *servers(redis_proc_server, postgres_proc_server))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_both?redis?*PASSED*", "*test_both?redis-tls?*PASSED*"])
