"""The Mw fixtures: ``mw_backend``, ``mw_namespace``, ``mw_l2_settings``, ``mw_config``, ``mw_clock``,
``mw_factory``, ``mw``, ``mw_keys``, ``mw_log_check``, and the raw clients ``mw_redis`` and ``mw_postgres``.

Every test gets its own key namespace (and, on PostgreSQL, its own database), so tests never see each other's data
and cleanup never touches anyone else's keys. The runtime is imported inside the fixtures, never at plugin import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mw.options import BACKEND_CHOICES, MLT_CHOICES, mw_options, resolve_backend

if TYPE_CHECKING:
    import psycopg

    from mw import ManualClock, MwConfig, MwManager
    from pytest_mw.checks import LogCheck
    from pytest_mw.recorder import KeyRecorder

DEFAULT_ORGAN = "test-agent"


# --- backend choice --------------------------------------------------------------------------------------------------
def marker_backends(node: pytest.Item | pytest.Collector) -> tuple[str, ...]:
    """Backends named by the closest ``mw_backend`` marker (validated), or ``()``."""
    marker = node.get_closest_marker("mw_backend")
    if marker is None:
        return ()
    backends = tuple(marker.args)
    unknown = [b for b in backends if b not in BACKEND_CHOICES]
    if not backends or unknown:
        pytest.fail(
            f"{node.nodeid}: @pytest.mark.mw_backend({', '.join(map(repr, backends))}): "
            f"name one or more of {', '.join(BACKEND_CHOICES)}",
            pytrace=False,
        )
    return backends


def backend_of(item: pytest.Item) -> str:
    """The backend a collected test will use: its parametrized value, its marker, or the run's option."""
    run_backend = mw_options(item.config).backend
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "mw_backend" in params:
        return resolve_backend(str(params["mw_backend"]), run_backend)
    backends = marker_backends(item)
    return resolve_backend(backends[0], run_backend) if backends else run_backend


def mlt_of(node: pytest.Item, backend: str) -> str:
    """``sqlite`` or ``postgres``: the marker's ``mlt=``, else ``--mw-mlt``; ``auto`` follows the backend."""
    marker = node.get_closest_marker("mw_backend")
    choice = marker.kwargs.get("mlt") if marker is not None else None
    if choice is None:
        choice = mw_options(node.config).mlt
    if choice not in MLT_CHOICES:
        pytest.fail(f"{node.nodeid}: mlt={choice!r}: choose one of {', '.join(MLT_CHOICES)}", pytrace=False)
    if choice == "auto":
        return "sqlite" if backend == "fakeredis" else "postgres"
    return str(choice)


@pytest.fixture
def mw_backend(request: pytest.FixtureRequest) -> str:
    """``"fakeredis"``, ``"redis"``, ``"redis-tls"``, ``"redis-cluster"`` or ``"redis-sentinel"``:
    ``@pytest.mark.mw_backend(...)`` beats ``--mw-backend`` beats ini ``mw_backend``.

    A marker naming several backends runs the test once per backend; a marker's ``redis`` is the run's real-Redis
    variant when ``--mw-backend`` names one (``redis-tls``, ``redis-cluster``, ``redis-sentinel``).
    """
    param = getattr(request, "param", None)
    if param is not None:
        return resolve_backend(str(param), mw_options(request.config).backend)
    return backend_of(request.node)


# --- configuration and clock -----------------------------------------------------------------------------------------
def _config_changes(node: pytest.Item) -> dict[str, Any]:
    """``@pytest.mark.mw_config(**changes)``; markers closer to the test win, status by status for ``task_ttls_s``
    (a class marker's ``{"running": 3}`` and a test's ``{"queued": 5}`` both apply)."""
    changes: dict[str, Any] = {}
    ttls: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("mw_config"))):
        if marker.args:
            pytest.fail(f"{node.nodeid}: mw_config takes keyword arguments only (MwConfig field names)", pytrace=False)
        changes.update(marker.kwargs)
        if isinstance(marker.kwargs.get("task_ttls_s"), dict):
            ttls.update(marker.kwargs["task_ttls_s"])
            changes["task_ttls_s"] = dict(ttls)
    return changes


def _clean_embedded(namespace: str) -> None:
    """Delete this test's keys from the process's shared fakeredis server (other tests' keys stay)."""
    import fakeredis

    from mw.tiers.l2 import embedded_server

    client = fakeredis.FakeRedis(server=embedded_server())
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture
def mw_namespace() -> str:
    """This test's key namespace, ``mwt:<uuid hex>``: the ``MwConfig.namespace`` of ``mw_config``, and the prefix
    (``f"{mw_namespace}:{key}"``) of every key ``mw_redis``/``mw_redis_url`` clean up. Unique per test and per
    xdist worker, so tests sharing one server never see each other's keys."""
    from pytest_mw.servers.clients import unique_namespace

    return unique_namespace()


@pytest.fixture
def mw_l2_settings(request: pytest.FixtureRequest, mw_backend: str) -> dict[str, Any]:
    """The ``MwConfig`` keyword arguments naming this test's L2, for suites that build their own config:
    ``MwConfig.from_env({}, namespace=mw_namespace, **mw_l2_settings)``.

    ``{}`` on ``fakeredis`` (the embedded server); ``{"redis_url": mw_redis_url}`` on ``redis`` and ``redis-tls``;
    ``{"redis_url": <a primary's URL>, "redis_cluster": True}`` on ``redis-cluster``; ``{"redis_sentinels":
    "host:port,...", "redis_sentinel_master": name}`` on ``redis-sentinel`` (no URL: the sentinels name the
    primary). On a real server it requests ``mw_redis_url``, so the namespace's keys go at teardown.
    """
    if mw_backend == "fakeredis":
        return {}
    url = str(request.getfixturevalue("mw_redis_url"))
    if mw_backend == "redis-cluster":
        return {"redis_url": url, "redis_cluster": True}
    if mw_backend == "redis-sentinel":
        group = request.getfixturevalue("mw_redis_sentinel")
        return {"redis_sentinels": group.sentinel_hosts, "redis_sentinel_master": group.master_name}
    return {"redis_url": url}


_TOPOLOGY_FIELDS = ("redis_url", "redis_cluster", "redis_sentinels", "redis_sentinel_master")


@pytest.fixture
def mw_config(
    request: pytest.FixtureRequest, mw_backend: str, mw_namespace: str, mw_l2_settings: dict[str, Any]
) -> Iterator[MwConfig]:
    """An ``MwConfig`` for this test on the chosen backend, in ``mw_namespace``; clusters closed after.

    ``fakeredis``: the embedded fake Redis and an in-memory SQLite Mlt. ``redis`` and its variants: the session's
    real Redis on the variant's topology (``mw_l2_settings``; keys under ``mw_namespace`` deleted afterwards) and a
    per-test PostgreSQL database (``mw_postgres_dsn``), unless ``--mw-mlt sqlite``. ``MW_*`` environment variables
    are not read, so a developer's shell cannot change test results; ``@pytest.mark.mw_config(l1_ttl_s=5, ...)``
    changes fields.
    """
    import mw
    from mw import MwConfig

    changes = _config_changes(request.node)
    mlt = mlt_of(request.node, mw_backend)
    mlt_dsn = str(request.getfixturevalue("mw_postgres_dsn")) if mlt == "postgres" else None
    config = MwConfig.from_env({}, mlt_dsn=mlt_dsn, namespace=mw_namespace, **{**mw_l2_settings, **changes})
    try:
        yield config
    finally:
        mw.close_all()
        if mw_backend == "fakeredis":
            _clean_embedded(mw_namespace)


@pytest.fixture
def mw_clock() -> ManualClock:
    """A ``ManualClock`` at the current time that moves only on ``advance()``/``set()``: expiry without sleeping.

    ``mw``/``mw_factory`` managers read it. It drives L0/L1 expiry and the logical expiry stored in every value;
    a real Redis still expires its keys (PTTL) on its own wall clock.
    """
    from mw import ManualClock

    return ManualClock()


# --- managers --------------------------------------------------------------------------------------------------------
class MwFactory:
    """Makes agents (``MwManager``) on the test's backend; equal config and clock mean a shared cluster.

    Managers made with the same config and clock share L1 (per ``node``), L2 and Mlt, as agents of one deployment
    do. ``**config_changes`` give a separate cluster that still shares L2 (same namespace) and, on PostgreSQL, Mlt.
    """

    def __init__(self, config: MwConfig, clock: ManualClock) -> None:
        self.config = config
        self.clock = clock
        self.managers: list[MwManager] = []

    def __call__(
        self,
        organ_id: str = DEFAULT_ORGAN,
        *,
        node: str = "local",
        clock: Any = None,
        real_clock: bool = False,
        from_env: bool = False,
        **config_changes: Any,
    ) -> MwManager:
        """A new manager. ``real_clock=True`` uses the system clock; ``from_env=True`` re-reads ``MW_*`` now."""
        from mw import MwConfig, MwManager

        config = self.config
        if from_env:
            topology = {name: getattr(config, name) for name in _TOPOLOGY_FIELDS}
            config = MwConfig.from_env(
                None, mlt_dsn=config.mlt_dsn, namespace=config.namespace, **{**topology, **config_changes}
            )
        elif config_changes:
            config = config.replace(**config_changes)
        chosen_clock = None if real_clock else (clock if clock is not None else self.clock)
        manager = MwManager(organ_id, config, node=node, clock=chosen_clock)
        self.managers.append(manager)
        return manager

    def close(self) -> None:
        for manager in self.managers:
            manager.close()
        self.managers.clear()


@pytest.fixture
def mw_factory(mw_config: MwConfig, mw_clock: ManualClock) -> Iterator[MwFactory]:
    """``mw_factory(organ_id, node=..., **config_changes)``: several agents sharing L1/L2/Mlt; all closed after."""
    factory = MwFactory(mw_config, mw_clock)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def mw(mw_factory: MwFactory) -> MwManager:
    """A ready ``MwManager`` (organ ``test-agent``) on the chosen backend, reading ``mw_clock``; closed after."""
    return mw_factory(DEFAULT_ORGAN)


# --- recorders -------------------------------------------------------------------------------------------------------
@pytest.fixture
def mw_keys(request: pytest.FixtureRequest) -> KeyRecorder:
    """Every key read, written and deleted at each tier during this test, with call sites (started before fixtures)."""
    from pytest_mw.checks import recorder_for

    return recorder_for(request.node)


@pytest.fixture
def mw_log_check(request: pytest.FixtureRequest) -> LogCheck:
    """Fail this test if a log record contains ``global:item:global:item:``; ``.records`` holds the offenders."""
    from pytest_mw.checks import log_check_for

    return log_check_for(request.node)


# --- raw clients -----------------------------------------------------------------------------------------------------
@pytest.fixture
def mw_redis(request: pytest.FixtureRequest, mw_backend: str, mw_namespace: str) -> Iterator[Any]:
    """A redis-py client on the L2 the ``mw`` fixtures use, for looking at (or planting) raw keys; closed after.

    A plain ``redis.Redis`` like pytest-redis's ``redisdb`` (bytes replies): on ``fakeredis`` a ``FakeRedis`` on
    the embedded server, on ``redis`` the session's real server (``mw_redis_url``), on ``redis-tls`` the TLS
    server as its admin user (``mw_redis_admin_url``: the runtime's user may not look around). On
    ``redis-cluster`` a ``redis.cluster.RedisCluster`` (it routes each key to its slot's node); on
    ``redis-sentinel`` a plain client of the primary the sentinels name at set-up (after a failover it talks to the
    demoted node: make a new one). Keys are not prefixed for you: this test's are ``f"{mw_namespace}:{key}"``
    (``mw``'s are ``mw.l2.phys(key)``: hash-tagged on a cluster), and every key under ``mw_namespace`` is deleted
    at teardown, never ``FLUSHALL``, since the server is shared with other tests and xdist workers.
    """
    if mw_backend != "fakeredis":
        import redis as redis_py
        from redis.cluster import RedisCluster

        request.getfixturevalue("mw_redis_url")  # its teardown deletes the namespace's keys
        admin_url = str(request.getfixturevalue("mw_redis_admin_url"))
        cluster = mw_backend == "redis-cluster"
        client = RedisCluster.from_url(admin_url) if cluster else redis_py.Redis.from_url(admin_url)
        try:
            yield client
        finally:
            client.close()  # mw_redis_url's teardown deletes the namespace's keys
        return
    import fakeredis

    from mw.tiers.l2 import embedded_server

    fake = fakeredis.FakeRedis(server=embedded_server())
    try:
        yield fake
    finally:
        fake.close()
        _clean_embedded(mw_namespace)


@pytest.fixture
def mw_postgres(mw_postgres_dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A psycopg connection to this test's own database (``mw_postgres_dsn``, the ``mw`` fixtures' Mlt when it is
    PostgreSQL), like pytest-postgresql's ``postgresql``: not autocommit (``commit()`` what other connections must
    see), closed after the test, and the database dropped."""
    import psycopg

    conn = psycopg.connect(mw_postgres_dsn)
    try:
        yield conn
    finally:
        conn.close()
