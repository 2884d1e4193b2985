"""Mlt, the long-term store: SQLite embedded by default, PostgreSQL for real deployments."""

from __future__ import annotations

from mw.errors import ConfigError
from mw.mlt.base import DEFAULT_TIMEOUT_S, MISSING, MltStore


def open_store(dsn: str | None, *, share_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> MltStore:
    """Open the store a DSN names: unset or ``sqlite://...`` -> SQLite, ``postgresql://...`` -> PostgreSQL.

    An in-memory SQLite opened with a ``share_key`` (the namespace) is one per process for that key.
    ``timeout_s`` (``MwConfig.mlt_timeout_s``) bounds every call, connecting included.
    """
    if dsn is None or dsn.startswith("sqlite://"):
        from mw.mlt.sqlite import SqliteMltStore, shared_memory_store, sqlite_path

        if share_key is not None and sqlite_path(dsn or "sqlite://") == ":memory:":
            return shared_memory_store(share_key, timeout_s=timeout_s)
        return SqliteMltStore(dsn or "sqlite://", timeout_s=timeout_s)
    if dsn.startswith(("postgresql://", "postgres://")):
        from mw.mlt.postgres import PostgresMltStore

        return PostgresMltStore(dsn, timeout_s=timeout_s)
    raise ConfigError("MW_MLT_DSN", dsn, "expected postgresql://... or sqlite:///path")


__all__ = ["MISSING", "MltStore", "open_store"]
