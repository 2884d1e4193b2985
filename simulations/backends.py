"""Where L2 and Mlt live for a run: embedded (fakeredis + SQLite), given servers, or servers started for the run.

Every run of an invocation (the cached run, the caching-disabled baseline, ...) gets its own Redis key namespace and
its own Mlt database, so no run sees another's data; both are removed afterwards. ``containers`` starts Redis and
PostgreSQL through the pytest plugin's providers: testcontainers when an engine answers, else throwaway local
``redis-server`` / PostgreSQL processes, and says which it used.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("simulations")

BACKENDS = ("embedded", "redis", "containers")

_runs = itertools.count()


@dataclass
class RunStores:
    """The settings one run's ``MwConfig`` gets, and how to clean up after it."""

    redis_url: str | None
    mlt_dsn: str | None
    namespace: str
    _cleanups: list[Any] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        return {"redis_url": self.redis_url, "mlt_dsn": self.mlt_dsn, "namespace": self.namespace}

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

    @property
    def deterministic(self) -> bool:
        return self.name == "embedded"

    def stores(self, label: str) -> RunStores:
        namespace = f"mwsim-{os.getpid()}-{next(_runs)}-{label}"
        run = RunStores(self.redis_url, None, namespace)
        if self.redis_url is not None:
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


def _remove(path: str, *suffixes: str) -> None:
    for suffix in suffixes:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


@contextlib.contextmanager
def open_backend(name: str, redis_url: str | None = None, mlt_dsn: str | None = None) -> Iterator[Backend]:
    """The backend for ``--backend NAME``; servers started here are stopped on exit."""
    if name == "embedded":
        yield Backend("embedded")
        return
    if name == "redis":
        if not redis_url:
            raise SystemExit("--backend redis needs --redis-url redis://... (and --mlt-dsn postgresql://...)")
        yield Backend("redis", redis_url, mlt_dsn, f"redis: {redis_url}; mlt: {_safe(mlt_dsn) or 'SQLite in memory'}")
        return
    if name != "containers":
        raise SystemExit(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    with contextlib.ExitStack() as stack:
        redis_spec = _start(stack, "redis")
        postgres_spec = _start(stack, "postgres")
        description = (
            f"containers: redis via {redis_spec.provider} ({redis_spec.detail}); "
            f"postgres via {postgres_spec.provider} ({postgres_spec.detail})"
        )
        yield Backend("containers", redis_spec.url, postgres_spec.url, description)


def _start(stack: contextlib.ExitStack, kind: str) -> Any:
    """A container when an engine answers, else a local throwaway process; says which and why."""
    from pytest_mw.servers.errors import ServerUnavailable
    from pytest_mw.servers.provider import resolve

    try:
        server, spec = resolve(kind, "container")  # type: ignore[arg-type]
    except ServerUnavailable as exc:
        log.warning("%s: no container (%s); starting a local throwaway server", kind, exc.reason)
        server, spec = resolve(kind, "process")  # type: ignore[arg-type]
    stack.callback(server.stop)
    return spec


def _safe(dsn: str | None) -> str | None:
    """A DSN without its password, for reports."""
    if dsn is None or "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
