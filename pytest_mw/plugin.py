"""The pytest11 entry point of pytest-mw: the ``mw`` options, markers, report header, fixtures and automatic checks.

Importing this module must stay cheap (pytest loads it on every run): the Mw runtime, redis, psycopg and
testcontainers are imported only inside fixtures and hooks that need them.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

# Before anything imports it: failing helpers then show pytest's comparison detail.
pytest.register_assert_rewrite("pytest_mw.assertions")

from pytest_mw import checks  # noqa: E402
from pytest_mw.fixtures import (  # noqa: E402, F401  (fixtures are found as attributes of this module)
    backend_of,
    marker_backends,
    mlt_of,
    mw,
    mw_backend,
    mw_clock,
    mw_config,
    mw_factory,
    mw_keys,
    mw_l2_settings,
    mw_log_check,
    mw_namespace,
    mw_postgres,
    mw_redis,
)
from pytest_mw.options import add_mw_options, add_server_options, mw_options, server_options  # noqa: E402
from pytest_mw.servers import factories  # noqa: E402
from pytest_mw.servers.provider import describe  # noqa: E402
from pytest_mw.servers.redis_cluster import redis_cluster_proc  # noqa: E402
from pytest_mw.servers.redis_sentinel import redis_sentinel_proc  # noqa: E402

REAL_SERVER_FIXTURES = frozenset(
    {
        "mw_redis_server",
        "mw_postgres_server",
        "mw_redis_url",
        "mw_redis_admin_url",
        "mw_redis_tls_server",
        "mw_redis_tls",
        "mw_redis_cluster",
        "mw_redis_sentinel",
        "mw_postgres_dsn",
        "mw_postgres",
    }
)
"""Fixtures that always need a real server (``mw_redis`` follows the backend, so ``mw_backend`` decides for it)."""

MARKERS = (
    "mw_real_servers: the test talks to a real Redis or PostgreSQL (added to tests using the mw_* server "
    "fixtures or the redis backend; deselect with -m 'not mw_real_servers')",
    "mw_backend(*backends, mlt=None): run the mw fixtures on these backends (fakeredis, redis, redis-tls, "
    "redis-cluster, redis-sentinel; several = one run each); mlt='sqlite'|'postgres' picks the Mlt store",
    "mw_config(**changes): MwConfig field changes for mw_config/mw/mw_factory (e.g. ttl_jitter=0, l1_ttl_s=5)",
    "mw_strict_keys(enabled=True, *, double_prefix=True, typed_only=True, roundtrip=True, allow=()): check this "
    "test's cache keys (mw_strict_keys(False) opts out of --mw-strict-keys)",
    "mw_check_logs(enabled=True): fail this test when a log record contains global:item:global:item: "
    "(mw_check_logs(False) opts out of --mw-check-logs)",
    "mw_lint: an mw-lint finding collected by --mw-lint",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mw", "mw: real Redis/PostgreSQL servers and the Mw cache")
    add_server_options(group, parser)
    add_mw_options(group, parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    server_options(config)
    for path in mw_options(config).lint:
        if not os.path.exists(path):
            raise pytest.UsageError(f"--mw-lint / mw_lint: {path}: no such file or directory")


def pytest_report_header(config: pytest.Config) -> list[str]:
    o = server_options(config)
    m = mw_options(config)
    redis_plan = describe("redis", o.provider, url=o.redis_url, executable=o.redis_exec, image=o.redis_image)
    postgres_plan = describe(
        "postgres", o.provider, url=o.postgres_dsn, executable=o.postgres_exec, image=o.postgres_image
    )
    summary = f"mw servers: provider={o.provider}, require servers={o.require_servers}"
    l2 = {
        "fakeredis": "fakeredis (embedded)",
        "redis": "redis (real server, see 'mw redis')",
        "redis-tls": "redis-tls (a TLS-only redis-server process, the runtime as a least-privilege ACL user)",
        "redis-cluster": "redis-cluster (a Redis Cluster of 6 redis-server processes: 3 primaries, a replica each)",
        "redis-sentinel": "redis-sentinel (a Sentinel group of redis-server processes: primary, replica, 3 sentinels)",
    }.get(m.backend, m.backend)
    mlt = m.mlt if m.mlt != "auto" else ("sqlite in memory" if m.backend == "fakeredis" else "postgres")
    lines = [summary, f"mw {redis_plan}", f"mw {postgres_plan}", f"mw backend: L2 {l2}, Mlt {mlt}"]
    lines.append(f"mw checks: strict keys={m.strict_keys}, check logs={m.check_logs}")
    if m.lint:
        lines.append(f"mw lint: {', '.join(os.path.relpath(p, config.rootpath) for p in m.lint)}")
    return lines


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """A failed comparison with a fixture's URL or DSN shows both sides with passwords masked.

    pytest's own string diff would print the values in full, password included.
    """
    from mw.secrets import mask_secrets
    from pytest_mw.servers.clients import SecretURL

    if not isinstance(left, SecretURL) and not isinstance(right, SecretURL):
        return None
    shown = [repr(mask_secrets(v)) if isinstance(v, str) else repr(v) for v in (left, right)]
    lines = [f"{shown[0]} {op} {shown[1]}", "(mw: a URL/DSN is compared with its password masked)"]
    if shown[0] == shown[1] and left != right:
        lines.append("the two differ only in their password")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.mw_backend("fakeredis", "redis")`` runs the test once per backend."""
    if "mw_backend" not in metafunc.fixturenames:
        return
    backends = marker_backends(metafunc.definition)
    if len(backends) > 1:
        metafunc.parametrize("mw_backend", backends, indirect=True, ids=backends)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark real-server tests; add ``--mw-lint`` items (first, so ``-k``/``-m`` selection applies to them)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if REAL_SERVER_FIXTURES.intersection(names) or ("mw_backend" in names and _needs_servers(item)):
            item.add_marker(pytest.mark.mw_real_servers)
    paths = mw_options(config).lint
    if paths:
        from pytest_mw.lint.items import lint_items

        items.extend(lint_items(session, paths))


def _needs_servers(item: pytest.Item) -> bool:
    """Whether the item's Mw fixtures will use a real Redis or PostgreSQL (bad markers error later, at setup)."""
    try:
        backend = backend_of(item)
        return backend != "fakeredis" or mlt_of(item, backend) == "postgres"
    except pytest.fail.Exception:
        return False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    checks.setup_checks(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    problems = checks.call_problems(item)
    if not problems:
        return
    text = "\n\n".join(problems)
    if outcome.excinfo is None:
        _fail(outcome, text)
    elif not issubclass(outcome.excinfo[0], pytest.skip.Exception):
        item.add_report_section("call", "mw checks", text)  # the test failed already: show ours next to it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    problems = checks.teardown_checks(item)
    if problems and outcome.excinfo is None:
        _fail(outcome, "\n\n".join(problems))


def _fail(outcome: Any, text: str) -> None:
    failure = pytest.fail.Exception(text, pytrace=False)
    if hasattr(outcome, "force_exception"):
        outcome.force_exception(failure)
    else:  # pluggy < 1.1
        raise failure


mw_redis_server = factories.redis_server(
    doc="Session: the real Redis (a ``ServerSpec``: ``.url``, ``.provider``) that ``--mw-server-provider`` chooses."
)
mw_postgres_server = factories.postgres_server(
    doc="Session: the real PostgreSQL (a ``ServerSpec``; ``.url`` is the server's admin DSN) that "
    "``--mw-server-provider`` chooses."
)
mw_redis_tls_server = factories.redis_tls_proc(
    doc="Session: a TLS-only redis-server process (throwaway CA, client certificates required) whose runtime user "
    "has the least-privilege ACL of ``mw.acl`` on ``mwt:*`` (``.url``); ``.admin_url`` names an admin user."
)


mw_redis_cluster = redis_cluster_proc(
    doc="Session: a throwaway Redis Cluster of 6 local redis-server processes (3 primaries, a replica each), a "
    "``RedisClusterProcesses``: ``.spec.url`` for ``RedisCluster.from_url``; ``.nodes()``, ``.failover()``, "
    "``.kill()``, ``.restart()``, ``.move_slot()``."
)
mw_redis_sentinel = redis_sentinel_proc(
    doc="Session: a throwaway primary, replica and 3 sentinels, a ``RedisSentinelGroup``: ``.sentinels``, "
    "``.sentinel_hosts``, ``.master_name``, ``.failover()``, ``.kill_primary()``, ``.restart()``; ``.spec``."
)


REDIS_SERVER_FIXTURES = {
    "redis-tls": "mw_redis_tls_server",
    "redis-cluster": "mw_redis_cluster",
    "redis-sentinel": "mw_redis_sentinel",
}
"""The session server (or topology) of each real-Redis variant; plain ``redis`` is ``mw_redis_server``."""


def _real_redis_server(request: pytest.FixtureRequest) -> str:
    """The session server of the test's backend: the variant's (TLS server, cluster, Sentinel group), else
    ``mw_redis_server``."""
    return REDIS_SERVER_FIXTURES.get(backend_of(request.node), "mw_redis_server")


mw_redis_url = factories.redis_url(
    _real_redis_server,
    doc="Per test: the URL of the session's Redis (on ``--mw-backend redis-tls`` the TLS server's, as its "
    "least-privilege user; on ``redis-cluster`` a primary's, on every node's keys cleaned; on ``redis-sentinel`` "
    "the current primary's, for raw inspection: build configs with ``mw_l2_settings``), a ``str`` whose repr masks "
    "the password; every key under ``mw_namespace`` is deleted at teardown (never FLUSHALL). "
    "``.url``/``.namespace``/``.key()``/``.client()`` are deprecated (0.1 API).",
)
mw_redis_tls = factories.redis_url(
    "mw_redis_tls_server",
    doc="Per test: the TLS server's ``rediss://`` URL as the runtime's least-privilege user (CA and client "
    "certificate in its query, so redis-py connects with the URL alone); keys under ``mw_namespace`` go at teardown.",
)


@pytest.fixture
def mw_redis_admin_url(request: pytest.FixtureRequest) -> str:
    """Per test: an admin URL of the server ``mw_redis_url`` names, for what the code under test may not do (fault
    injection: ``CLIENT KILL``, ``CONFIG SET``; inspection). The same URL where the server has no ACL users (on a
    cluster: a primary's; on a Sentinel group: the current primary's)."""
    from pytest_mw.servers.clients import SecretURL

    spec = request.getfixturevalue(_real_redis_server(request))  # a ServerSpec, a cluster or a Sentinel group
    return SecretURL(spec.admin_url or spec.url)


mw_postgres_dsn = factories.postgres_dsn(
    "mw_postgres_server",
    doc="Per test: the DSN of a fresh database, a ``str`` whose repr masks the password (``.dbname`` names the "
    "database); dropped at teardown, leftover connections too.",
)
