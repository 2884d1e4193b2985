"""Backends for the runtime tests: every behaviour runs on the embedded default and on real servers.

``embedded`` is fakeredis + in-memory SQLite; ``real`` is a real Redis and a real PostgreSQL from the
plugin's server fixtures (a throwaway process or container, or a server named by URL), with a
per-test key namespace and a per-test database, so no test sees another's data.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mw
from mw import MwConfig, MwManager
from mw.clock import ManualClock


def pytest_addoption(parser: pytest.Parser) -> None:
    """pyproject.toml sets pytest-asyncio's options; where the test extra's pytest-asyncio is not installed yet, they
    would be unknown options, which ``-W error`` turns into an internal error before any test runs."""
    if importlib.util.find_spec("pytest_asyncio") is None:
        parser.addini("asyncio_mode", "pytest-asyncio's mode (pytest-asyncio is not installed)")
        parser.addini("asyncio_default_fixture_loop_scope", "pytest-asyncio's loop scope (not installed)")


BACKENDS = ["embedded", pytest.param("real", marks=pytest.mark.mw_real_servers)]

TOPOLOGIES = {"redis-cluster": "cluster", "redis-sentinel": "sentinel"}
"""The run's ``--mw-backend`` variants whose L2 is not one standalone server, and their ``RedisTopology`` kind."""

L2_DEFECT = (
    "l2_defect(variant, reason): on that --mw-backend variant the runtime (mw/) is known to fail this test: a strict "
    "xfail naming the defect, so the run stays honest and a fix fails as XPASS(strict) (then drop the marker)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", L2_DEFECT)


def _run_variant(config: pytest.Config) -> str:
    """``redis``, or the ``--mw-backend`` real-Redis variant that serves the ``real`` tests of this run."""
    from pytest_mw.options import mw_options, resolve_backend

    return resolve_backend("redis", mw_options(config).backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def real_backend(request: pytest.FixtureRequest) -> str:
    """The run's real-Redis backend (``redis``, or the ``--mw-backend`` variant that serves ``real`` tests)."""
    return _run_variant(request.config)


@pytest.fixture
def real_l2_topology(request: pytest.FixtureRequest) -> str:
    """``standalone``, ``cluster`` or ``sentinel``: the topology of the run's real L2."""
    return TOPOLOGIES.get(real_backend(request), "standalone")


@pytest.fixture
def l2_topology(backend: str, real_l2_topology: str) -> str:
    """``standalone`` (embedded or one real server), ``cluster`` or ``sentinel``: the test's L2 topology."""
    return "standalone" if backend == "embedded" else real_l2_topology


def _on_real_l2(request: pytest.FixtureRequest) -> bool:
    """The test runs on the real L2 (not the ``embedded`` or ``fakeredis`` parameter)."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    return params.get("backend", "real") == "real" and params.get("mw_backend", "redis") != "fakeredis"


@pytest.fixture(autouse=True)
def _known_l2_defects(request: pytest.FixtureRequest) -> None:
    """``l2_defect(variant, reason)``: a strict xfail when this test runs on that variant's real L2."""
    variant = real_backend(request)
    if not _on_real_l2(request):
        return
    for defect in request.node.iter_markers("l2_defect"):
        if defect.args[0] == variant:
            request.applymarker(pytest.mark.xfail(strict=True, reason=f"mw defect on {variant}: {defect.args[1]}"))


@pytest.fixture
def real_l2_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``MwConfig`` fields of the run's real L2: the plugin's ``mw_l2_settings`` on the ``--mw-backend``
    variant's topology, or (``--mw-backend`` fakeredis, the default) the session's standalone server; the test's
    namespace is cleaned at teardown either way (``mw_redis_url``)."""
    if request.getfixturevalue("mw_backend") == "fakeredis":
        return {"redis_url": str(request.getfixturevalue("mw_redis_url"))}
    return dict(request.getfixturevalue("mw_l2_settings"))


@pytest.fixture
def l2_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``MwConfig`` fields of the test's L2: ``{}`` embedded, else ``real_l2_settings``."""
    return {} if backend == "embedded" else dict(request.getfixturevalue("real_l2_settings"))


@pytest.fixture
def dead_l2(l2_topology: str) -> dict[str, Any]:
    """``MwConfig`` changes pointing the test's L2 at a port nobody listens on, on its topology: the Redis URL (one
    server, or the cluster's seed node), or the sentinels (a Sentinel group's URL names no host)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if l2_topology == "sentinel":
        return {"redis_sentinels": f"127.0.0.1:{port}"}
    return {"redis_url": f"redis://127.0.0.1:{port}/0"}


@pytest.fixture
def base_config(backend: str, request: pytest.FixtureRequest) -> MwConfig:
    ns = f"t{uuid.uuid4().hex[:12]}"
    if backend == "embedded":
        return MwConfig.from_env({}, namespace=ns)
    dsn = str(request.getfixturevalue("mw_postgres_dsn"))
    namespace = request.getfixturevalue("mw_namespace")
    return MwConfig.from_env({}, mlt_dsn=dsn, namespace=namespace, **request.getfixturevalue("l2_settings"))


@pytest.fixture
def l2_admin(backend: str, l2_topology: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A client with every right on the test's L2, for planting what the runtime's least-privilege user may not
    (a hash where a value belongs, a killed connection): the embedded server, or ``mw_redis_admin_url`` (on a
    cluster a ``RedisCluster`` routing each key to its node; on a Sentinel group the primary now)."""
    if backend == "embedded":
        import fakeredis

        from mw.tiers.l2 import embedded_server

        client: Any = fakeredis.FakeRedis(server=embedded_server())
    elif l2_topology == "cluster":
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(str(request.getfixturevalue("mw_redis_admin_url")))
    else:
        import redis

        client = redis.Redis.from_url(str(request.getfixturevalue("mw_redis_admin_url")))
    yield client
    client.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
def make_manager(base_config: MwConfig, clock: ManualClock) -> Iterator[Callable[..., MwManager]]:
    """Build agents that share the test's cluster; ``**changes`` alter the config (a new cluster)."""
    made: list[MwManager] = []

    def make(organ_id: str = "agent-1", *, node: str = "local", real_clock: bool = False, **changes: Any) -> MwManager:
        config = base_config.replace(**changes) if changes else base_config
        m = MwManager(organ_id, config, node=node, clock=None if real_clock else clock)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()
    mw.close_all()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """One local Ray cluster for every Ray test of the session (reused if something else started one)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'pytest-mw[ray]'")
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024 * 1024,
            log_to_driver=False,
            logging_level="WARNING",
            namespace=f"mw-tests-{uuid.uuid4().hex[:8]}",
        )
    yield ray.cluster_resources()
    if started:
        ray.shutdown()
