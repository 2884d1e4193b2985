"""Where L2 and Mlt live for a run: embedded (fakeredis + SQLite), given servers, or servers started for the run.

Every run of an invocation (the cached run, the caching-disabled baseline, ...) gets its own Redis key namespace and
its own Mlt database, so no run sees another's data; both are removed afterwards. ``containers`` starts Redis and
PostgreSQL through the pytest plugin's providers: testcontainers when an engine answers, else throwaway local
``redis-server`` / PostgreSQL processes, and says which it used. ``redis-cluster`` and ``redis-sentinel`` start a
throwaway Redis Cluster (3 primaries with a replica each) or Sentinel group (a primary, a replica, 3 sentinels) of
local processes and a local PostgreSQL, and run the runtime on that topology (``--realtime`` faults can then kill a
primary or move slots: :mod:`simulations.real_faults`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mw.secrets import mask_secrets

log = logging.getLogger("simulations")

BACKENDS = ("embedded", "redis", "containers", "redis-cluster", "redis-sentinel")
TOPOLOGIES = ("redis-cluster", "redis-sentinel")

_runs = itertools.count()

_MLT_SCHEMES = ("postgresql://", "postgres://", "sqlite:///")


class BackendUnavailable(Exception):
    """A backend cannot be used: a flag it needs is missing, or its server does not answer (an exit-2 error).

    The message names the server by :func:`mw.secrets.mask_secrets`, never with its password.
    """


@dataclass
class RunStores:
    """The settings one run's ``MwConfig`` gets, and how to clean up after it."""

    redis_url: str | None
    mlt_dsn: str | None
    namespace: str
    _cleanups: list[Any] = field(default_factory=list)
    topology: dict[str, Any] = field(default_factory=dict)
    """The L2 topology's ``MwConfig`` fields (``redis_cluster``, or ``redis_sentinels`` and the master's name)."""

    def settings(self) -> dict[str, Any]:
        return {"redis_url": self.redis_url, "mlt_dsn": self.mlt_dsn, "namespace": self.namespace, **self.topology}

    def cleanup(self) -> None:
        for undo in reversed(self._cleanups):
            try:
                undo()
            except Exception as exc:  # cleanup must not hide the run's result
                log.warning("cleanup after the run failed: %s", exc)
        self._cleanups.clear()


@dataclass
class Backend:
    """A backend for the whole invocation; :meth:`stores` hands each run its own namespace and database."""

    name: str
    redis_url: str | None = None
    mlt_dsn: str | None = None
    description: str = "embedded: fakeredis (in process) + SQLite (in memory)"
    servers: dict[str, Any] = field(default_factory=dict)
    """The servers this invocation started, by kind (``redis``, ``postgres``): what ``--realtime`` faults pause or
    kill (:mod:`simulations.real_faults`). Empty for servers it was given (``--backend redis``). On a topology,
    ``redis`` is the ``RedisClusterProcesses`` or ``RedisSentinelGroup``."""
    topology: dict[str, Any] = field(default_factory=dict)
    """``MwConfig`` fields of the L2 topology, for every run (empty: one Redis server)."""

    @property
    def deterministic(self) -> bool:
        return self.name == "embedded"

    def stores(self, label: str) -> RunStores:
        namespace = f"mwsim-{os.getpid()}-{next(_runs)}-{label}"
        run = RunStores(self.redis_url, None, namespace, topology=dict(self.topology))
        if self.name == "embedded":
            run._cleanups.append(lambda: _clean_embedded(namespace + ":"))
        elif self.name in TOPOLOGIES:
            run._cleanups.append(lambda: _clean_topology(self.servers["redis"], namespace + ":"))
        elif self.redis_url is not None:
            from pytest_mw.servers.clients import RedisNamespace

            run._cleanups.append(RedisNamespace(self.redis_url, namespace + ":").cleanup)
        dsn = self.mlt_dsn
        if dsn is not None and dsn.startswith(("postgresql://", "postgres://")):
            from pytest_mw.servers.clients import PostgresDatabase

            database = PostgresDatabase(dsn)
            run.mlt_dsn = database.create()
            run._cleanups.append(database.drop)
        elif dsn is not None and dsn.startswith("sqlite:///") and dsn != "sqlite:///:memory:":
            path = f"{dsn[len('sqlite://') :]}.{namespace}"
            run.mlt_dsn = f"sqlite://{path}"
            run._cleanups.append(lambda: _remove(path, "", "-wal", "-shm"))
        return run


def _clean_topology(group: Any, prefix: str) -> None:
    """Delete a run's keys on a cluster (every primary) or a Sentinel group (its primary now), one key at a time
    (a cluster's keys of one ``DEL`` must share a slot)."""
    import redis

    nodes = group.primaries() if hasattr(group, "primaries") else [group.primary()]
    for node in nodes:
        with redis.Redis(host=node.host, port=node.port, socket_timeout=5) as client:
            for key in client.scan_iter(match=prefix + "*", count=500):
                client.delete(key)


def _clean_embedded(prefix: str) -> None:
    """Delete a run's keys on the process's embedded server, which outlives the run (a test session runs many)."""
    from mw.tiers.embedded import embedded_client, embedded_server

    client = embedded_client(embedded_server())
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


def _remove(path: str, *suffixes: str) -> None:
    for suffix in suffixes:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


@contextlib.contextmanager
def open_backend(
    name: str, redis_url: str | None = None, mlt_dsn: str | None = None, *, provider: str | None = None
) -> Iterator[Backend]:
    """The backend for ``--backend NAME``; servers started here are stopped on exit.

    ``provider`` (``containers`` only): ``process`` or ``container`` to start only that kind of server (default: a
    container when an engine answers, else a local process).

    Given servers are probed first, so an unreachable one is a :class:`BackendUnavailable` naming it before any run
    starts (the runtime would otherwise mark the tier down mid-run, or fall through to Mlt and report nonsense).
    """
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name != "redis":
        given = [flag for flag, value in (("--redis-url", redis_url), ("--mlt-dsn", mlt_dsn)) if value]
        if given:
            raise BackendUnavailable(f"{' and '.join(given)}: only with --backend redis, not {name}")
    if name == "embedded":
        yield Backend("embedded")
        return
    if name == "redis":
        if not redis_url:
            raise BackendUnavailable("--backend redis needs --redis-url redis://... (and --mlt-dsn postgresql://...)")
        if mlt_dsn and not mlt_dsn.startswith(_MLT_SCHEMES):
            raise BackendUnavailable(
                f"--mlt-dsn {mask_secrets(mlt_dsn)}: not a postgresql://, postgres:// or sqlite:/// DSN"
            )
        problems = [probe_redis(redis_url)]
        if mlt_dsn and not mlt_dsn.startswith("sqlite:"):
            problems.append(probe_postgres(mlt_dsn))
        if any(problems):
            raise BackendUnavailable("; ".join(p for p in problems if p))
        description = (
            f"redis: {mask_secrets(redis_url)}; mlt: {mask_secrets(mlt_dsn) if mlt_dsn else 'SQLite in memory'}"
        )
        yield Backend("redis", redis_url, mlt_dsn, description)
        return
    if name in TOPOLOGIES:
        with contextlib.ExitStack() as stack:
            group, topology = _start_topology(stack, name)
            postgres_server, postgres_spec = _start(stack, "postgres", "process")
            description = f"{name}: {group.label}; postgres via {postgres_spec.provider} ({postgres_spec.detail})"
            servers = {"redis": group, "postgres": postgres_server}
            url = group.url if name == "redis-cluster" else None
            yield Backend(name, url, postgres_spec.url, description, servers, topology)
        return
    if provider not in (None, "process", "container"):
        raise BackendUnavailable(f"server provider {provider!r}: process or container")
    with contextlib.ExitStack() as stack:
        redis_server, redis_spec = _start(stack, "redis", provider)
        postgres_server, postgres_spec = _start(stack, "postgres", provider)
        description = (
            f"containers: redis via {redis_spec.provider} ({redis_spec.detail}); "
            f"postgres via {postgres_spec.provider} ({postgres_spec.detail})"
        )
        servers = {"redis": redis_server, "postgres": postgres_server}
        yield Backend("containers", redis_spec.url, postgres_spec.url, description, servers)


def probe_redis(url: str, timeout_s: float = 5.0) -> str | None:
    """PING the Redis at ``url``: None if it answers, else why not (password masked)."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s) as client:
            client.ping()
    except ValueError as exc:  # redis-py cannot parse the URL
        return _problem("Redis", url, "is not a valid URL", exc)
    except (redis.RedisError, OSError) as exc:
        return _problem("Redis", url, "is unreachable", exc)
    return None


def probe_postgres(dsn: str, timeout_s: int = 5) -> str | None:
    """Connect to the PostgreSQL at ``dsn``: None if it answers, else why not (password masked)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s):
            pass
    except psycopg.ProgrammingError as exc:  # libpq cannot parse the DSN
        return _problem("PostgreSQL", dsn, "is not a valid DSN", exc)
    except (psycopg.Error, OSError) as exc:
        return _problem("PostgreSQL", dsn, "is unreachable", exc)
    return None


def _problem(what: str, url: str, problem: str, exc: BaseException) -> str:
    reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return f"{what} at {mask_secrets(url)} {problem}: {mask_secrets(reason)}"


def _start_topology(stack: contextlib.ExitStack, name: str) -> tuple[Any, dict[str, Any]]:
    """Start the cluster or the Sentinel group of ``--backend NAME`` (stopped with ``stack``) and its config fields."""
    from pytest_mw.servers.errors import ServerUnavailable
    from pytest_mw.servers.redis_cluster import RedisClusterProcesses
    from pytest_mw.servers.redis_sentinel import RedisSentinelGroup

    group: Any = RedisClusterProcesses() if name == "redis-cluster" else RedisSentinelGroup()
    try:
        group.start()
    except ServerUnavailable as exc:
        raise BackendUnavailable(f"{name}: {exc.reason}") from None
    stack.callback(group.stop)
    if name == "redis-cluster":
        return group, {"redis_cluster": True}
    return group, {"redis_sentinels": group.sentinel_hosts, "redis_sentinel_master": group.master_name}


def _start(stack: contextlib.ExitStack, kind: str, provider: str | None = None) -> tuple[Any, Any]:
    """A container when an engine answers, else a local throwaway process (or only ``provider``); says which and why.

    Returns the server (its handle: stop, and pause/kill for faults) and its spec."""
    from pytest_mw.servers.errors import ServerUnavailable
    from pytest_mw.servers.provider import resolve

    if provider is not None:
        try:
            server, spec = resolve(kind, provider)  # type: ignore[arg-type]
        except ServerUnavailable as exc:
            raise BackendUnavailable(f"{kind} via {provider}: {exc.reason}") from None
    else:
        try:
            server, spec = resolve(kind, "container")  # type: ignore[arg-type]
        except ServerUnavailable as exc:
            log.warning("%s: no container (%s); starting a local throwaway server", kind, exc.reason)
            server, spec = resolve(kind, "process")  # type: ignore[arg-type]
    stack.callback(server.stop)
    return server, spec
