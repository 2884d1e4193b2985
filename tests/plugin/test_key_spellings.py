"""The roundtrip check catches a delete under another spelling that leaves the written copy cached.

The origin system wrote ``global:item:task:by_id:42`` and deleted ``global:item:task:42``: the delete found nothing
and the row stayed cached. ``--mw-strict-keys`` and ``assert_key_roundtrip(mw_keys)`` flag it.
"""

from __future__ import annotations

import pytest
from plugin_nested import run

from pytest_mw import KeyRecord, assert_key_roundtrip

SPELLINGS = """
import pytest
from pytest_mw import assert_key_roundtrip

def test_row_deleted_under_kind_and_id(mw):
    mw.cache_task_row({"id": 42, "status": "running"})
    mw.del_global_key("task:42")
    assert mw.get_task(42) is not None  # the bug: the row is still served

def test_invalidated_by_hand_in_the_test(mw, mw_keys):
    mw.set_global_item_typed("task", "by_id", "43", {"status": "running"})
    mw.del_global_key("task:43")
    assert_key_roundtrip(mw_keys)

def test_both_spellings_deleted(mw):
    mw.cache_task_row({"id": 44, "status": "running"})
    mw.del_global_key("task:44")
    mw.invalidate_task(44)

def test_legacy_spelling_deleted_after_the_right_key(mw):
    mw.cache_task_row({"id": 45, "status": "running"})
    mw.invalidate_task(45)
    mw.del_global_key("task:45")

def test_legacy_spelling_deleted_before_anything_was_written(mw):
    mw.del_global_key("task:46")
    mw.cache_task_row({"id": 46, "status": "running"})

def test_another_kind_with_the_same_id(mw):
    mw.set_global_item_typed("profile", "agent", "47", 1)
    mw.del_global_key("task:47")

def test_another_scope_of_the_same_kind(mw):
    mw.set_global_item_typed("task", "by_name", "48", 1)
    mw.del_global_item_typed("task", "by_id", "48")
"""


def test_strict_keys_flag_a_delete_that_leaves_the_written_key_cached(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nested_spellings=SPELLINGS)
    result = run(pytester, "--mw-strict-keys", "-rf")
    result.assert_outcomes(passed=5, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_row_deleted_under_kind_and_id _*",
            "an item was written under one key but read or deleted under another*",
            "  write  *global:item:task:by_id:42",
            "      at test_nested_spellings.py:5 in test_row_deleted_under_kind_and_id (via MwManager.cache_task_row)",
            "  delete *global:item:task:42",
            "      at test_nested_spellings.py:6 in test_row_deleted_under_kind_and_id (via MwManager.del_global_key)",
            "      (still cached under the written key)",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*_ test_invalidated_by_hand_in_the_test _*", "E*global:item:task:43 (written as global:item:task:by_id:43)*"]
    )
    result.stdout.fnmatch_lines(
        ["FAILED *test_row_deleted_under_kind_and_id*", "FAILED *test_invalidated_by_hand_in_the_test*"]
    )


def _events(*triples: tuple[str, str, str]) -> list[KeyRecord]:
    return [KeyRecord(op, tier, key) for op, tier, key in triples]


def test_the_plain_check_on_recorded_events() -> None:
    written = ("write", "L2", "global:item:task:by_id:42")
    with pytest.raises(AssertionError, match=r"global:item:task:42 \(written as global:item:task:by_id:42\)"):
        assert_key_roundtrip(_events(written, ("delete", "L2", "global:item:task:42")))
    assert_key_roundtrip(
        _events(written, ("delete", "L2", "global:item:task:42"), ("delete", "L2", "global:item:task:by_id:42"))
    )
    assert_key_roundtrip(_events(("delete", "L2", "global:item:task:42"), written))
    assert_key_roundtrip(_events(written, ("delete", "L2", "global:item:doc:42")))
    with pytest.raises(AssertionError, match="read or deleted under another"):  # reads stay flagged as before
        assert_key_roundtrip(_events(written, ("read", "L2", "global:item:task:42")))
