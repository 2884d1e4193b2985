"""Mlt on PostgreSQL through psycopg 3 and a connection pool.

One pool per cluster (managers built from equal configuration share it). ``jsonb`` would reorder keys
and lose our type tags' exactness for Decimal, so values are ``text`` holding tagged JSON.
"""

from __future__ import annotations

from typing import Any

from mw.keys import task_id_str
from mw.mlt.base import MISSING, MltStore, decode_row, decode_value, encode_value

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mw_items (
    kind text NOT NULL, scope text NOT NULL, item_id text NOT NULL,
    value text NOT NULL, version bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, scope, item_id)
);
CREATE TABLE IF NOT EXISTS mw_tasks (
    id text PRIMARY KEY, status text NOT NULL, row text NOT NULL, version bigint NOT NULL DEFAULT 1
);
"""


class PostgresMltStore(MltStore):
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0) -> None:
        super().__init__()
        import psycopg
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        # CREATE TABLE IF NOT EXISTS races between processes; an advisory lock makes it safe.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(7201)")
            try:
                conn.execute(_SCHEMA)
            finally:
                conn.execute("SELECT pg_advisory_unlock(7201)")
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=True,
            kwargs={"autocommit": True},
        )

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._count()
        with self._pool.connection() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

    def get_item(self, kind: str, scope: str, item_id: str) -> Any:
        row = self._one("SELECT value FROM mw_items WHERE kind=%s AND scope=%s AND item_id=%s", (kind, scope, item_id))
        return MISSING if row is None else decode_value(row[0])

    def put_item(self, kind: str, scope: str, item_id: str, value: Any) -> int:
        row = self._one(
            "INSERT INTO mw_items (kind, scope, item_id, value) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (kind, scope, item_id) DO UPDATE SET value=excluded.value, version=mw_items.version+1 "
            "RETURNING version",
            (kind, scope, item_id, encode_value(value)),
        )
        assert row is not None
        return int(row[0])

    def delete_item(self, kind: str, scope: str, item_id: str) -> bool:
        row = self._one(
            "DELETE FROM mw_items WHERE kind=%s AND scope=%s AND item_id=%s RETURNING 1",
            (kind, scope, item_id),
        )
        return row is not None

    def get_task(self, task_id: object) -> dict[str, Any] | None:
        row = self._one("SELECT row, version FROM mw_tasks WHERE id=%s", (task_id_str(task_id),))
        return None if row is None else decode_row(row[0], int(row[1]))

    def _upsert_task(self, task_id: str, status: str, row_json: str) -> int:
        row = self._one(
            "INSERT INTO mw_tasks (id, status, row) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET status=excluded.status, row=excluded.row, "
            "version=mw_tasks.version+1 RETURNING version",
            (task_id, status, row_json),
        )
        assert row is not None
        return int(row[0])

    def _delete_task(self, task_id: str) -> bool:
        return self._one("DELETE FROM mw_tasks WHERE id=%s RETURNING 1", (task_id,)) is not None

    def close(self) -> None:
        self._pool.close()
