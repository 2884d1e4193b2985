"""Mlt stores: SQLite and PostgreSQL behave the same, and every statement is counted."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from mw import MwManager, TaskRowError
from mw.mlt import MISSING

Make = Callable[..., MwManager]


def test_items_roundtrip_with_versions(make_manager: Make) -> None:
    store = make_manager("a").mlt
    assert store.get_item("doc", "s", "1") is MISSING
    assert store.put_item("doc", "s", "1", {"a": 1}) == 1
    assert store.put_item("doc", "s", "1", None) == 2
    assert store.get_item("doc", "s", "1") is None, "None is a storable value, distinct from MISSING"
    assert store.delete_item("doc", "s", "1") is True and store.delete_item("doc", "s", "1") is False
    assert store.queries == 6


def test_task_rows_roundtrip_with_database_types(make_manager: Make) -> None:
    store = make_manager("a").mlt
    tid = uuid.uuid4()
    row = {
        "id": tid,
        "status": "queued",
        "run_after": dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone.utc),
        "lease_expires_at": None,
        "cost": Decimal("0.10"),
        "payload": {"steps": [1, 2]},
    }
    stored = store.put_task(row)
    assert stored["version"] == 1
    assert store.get_task(tid) == row
    assert store.get_task(tid, with_meta=True) == {**row, "version": 1}
    updated = store.update_task_status(str(tid), "running", attempts=1)
    assert updated is not None and updated["status"] == "running" and updated["version"] == 2
    assert store.get_task(tid)["attempts"] == 1  # type: ignore[index]
    assert store.update_task_status("nope", "running") is None
    assert store.delete_task(tid) is True and store.get_task(tid) is None


@pytest.mark.parametrize("row", [{}, {"status": "queued"}, {"id": None}, {"id": 1, "status": 5}, ["id", 1]])
def test_bad_task_rows_are_named(make_manager: Make, row: object) -> None:
    with pytest.raises(TaskRowError):
        make_manager("a").mlt.put_task(row)  # type: ignore[arg-type]


def test_managers_with_equal_config_share_one_store(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    assert a.mlt is b.mlt and a.l2 is b.l2 and a.l1 is not b.l1
    a.mlt.put_item("doc", "s", "1", 1)
    assert b.get_item_typed("doc", "s", "1") == 1


def test_clusters_sharing_l2_share_the_embedded_store(make_manager: Make, backend: str) -> None:
    """Two configs that differ only in tuning share L2; they must not disagree about what exists."""
    a = make_manager("a")
    b = make_manager("b", l0_max_items=123)
    assert a.cluster is not b.cluster
    a.mlt.put_task({"id": 7, "status": "queued"})
    row = b.get_task(7)
    assert row is not None and row == a.get_task(7)
    if backend == "embedded":
        assert a.mlt is b.mlt
