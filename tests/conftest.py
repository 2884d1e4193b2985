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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def base_config(backend: str, request: pytest.FixtureRequest) -> MwConfig:
    ns = f"t{uuid.uuid4().hex[:12]}"
    if backend == "embedded":
        return MwConfig.from_env({}, namespace=ns)
    redis_url = str(request.getfixturevalue("mw_redis_url"))
    dsn = str(request.getfixturevalue("mw_postgres_dsn"))
    return MwConfig.from_env({}, redis_url=redis_url, mlt_dsn=dsn, namespace=request.getfixturevalue("mw_namespace"))


@pytest.fixture
def l2_admin(backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A client with every right on the test's L2, for planting what the runtime's least-privilege user may not
    (a hash where a value belongs, a killed connection): the embedded server, or ``mw_redis_admin_url``."""
    if backend == "embedded":
        import fakeredis

        from mw.tiers.l2 import embedded_server

        client: Any = fakeredis.FakeRedis(server=embedded_server())
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
