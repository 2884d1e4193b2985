"""The key grammar: one builder per key, validated components, never a double prefix (defect 1)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mw import KeyGrammarError
from mw import keys as K

component = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"),
    min_size=1,
    max_size=40,
)
item_id = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
    lambda s: not s.startswith(K.RESERVED_PREFIXES)
)


@given(component, component, item_id)
def test_typed_key_shape_and_parse(kind: str, scope: str, iid: str) -> None:
    key = K.global_typed_key(kind, scope, iid)
    assert key == f"global:item:{kind}:{scope}:{iid}"
    assert K.DOUBLE_PREFIX not in key
    _, _, k2, s2, rest = key.split(":", 4)
    assert (k2, s2, rest) == (kind, scope, iid)
    assert K.global_key(key) == key, "an already-qualified key is never prefixed again"
    assert K.global_key(key, is_global=True) == key


@given(item_id)
def test_untyped_global_key_prefixed_exactly_once(iid: str) -> None:
    key = K.global_key(iid)
    assert key == "global:item:" + iid
    assert K.global_key(key) == key
    assert K.DOUBLE_PREFIX not in K.global_key(key, is_global=True)


@pytest.mark.parametrize(
    ("args", "part"),
    [
        (("", "s", "1"), "kind"),
        (("task", "", "1"), "scope"),
        (("task", "s", ""), "item_id"),
        (("ta:sk", "s", "1"), "kind"),
        (("task", "by:id", "1"), "scope"),
        (("task", "s", "a\nb"), "item_id"),
        (("task", "s", "x\x00"), "item_id"),
        ((1, "s", "1"), "kind"),
        (("task", "s", None), "item_id"),
        (("task", "s", ["1"]), "item_id"),
        (("task", "s", "x" * 300), "item_id"),
        (("task", "s", "global:item:task:s:1"), "item_id"),
    ],
)
def test_bad_components_raise_typed_error_naming_the_part(args: tuple[object, ...], part: str) -> None:
    with pytest.raises(KeyGrammarError) as info:
        K.global_typed_key(*args)  # type: ignore[arg-type]
    assert info.value.part == part
    assert part in str(info.value)
    assert isinstance(info.value, ValueError)


def test_is_global_requires_a_global_key_and_double_prefix_is_refused() -> None:
    with pytest.raises(KeyGrammarError, match="is_global=True"):
        K.global_key("task:1", is_global=True)
    with pytest.raises(KeyGrammarError, match="double-prefixed"):
        K.global_key("global:item:global:item:x")


def test_task_key_accepts_database_id_types_and_is_the_one_key() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert K.task_key(42) == "global:item:task:by_id:42" == K.task_key("42")
    assert K.task_key(u) == f"global:item:task:by_id:{u}"
    for bad in (None, True, 1.5):
        with pytest.raises(KeyGrammarError):
            K.task_key(bad)


def test_organ_keys_and_internal_keys() -> None:
    assert K.organ_key("a1", "note") == "organ:a1:item:note"
    assert K.organ_key("a1", "organ:a1:item:note") == "organ:a1:item:note"
    assert K.organ_typed_key("a1", "doc", "7") == "organ:a1:item:doc:7"
    with pytest.raises(KeyGrammarError):
        K.organ_key("a:1", "x")
    neg = K.negative_key(K.task_key(1))
    assert K.is_internal(neg) and K.is_internal(K.lease_key("k")) and not K.is_internal(K.task_key(1))
    assert K.display_name(K.task_key(123)) == "task:by_id:123"
