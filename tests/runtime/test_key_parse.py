"""``mw.keys.parse_key`` reads back every key the runtime builds: the one grammar the plugin, the linter and the
simulator use instead of restating it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mw import KeyGrammarError, MwConfig, MwManager
from mw import keys as K
from mw.observe import KeyEvent, add_observer

AWKWARD = ":*?[]\\ %{}|\"'\u00e9\u00df\u4e2d\U0001f600\u200b"
"""Colons (an id may hold them), glob and format characters, whitespace, non-ASCII, a zero-width space."""

text_chars = st.one_of(st.sampled_from(AWKWARD), st.characters(blacklist_categories=("Cc", "Cs")))
component = st.text(alphabet=text_chars, min_size=1, max_size=24).map(lambda s: s.replace(":", "_") or "_")
item_id = st.text(alphabet=text_chars, min_size=1, max_size=40).filter(
    lambda s: not s.startswith(K.RESERVED_PREFIXES) and s.strip(":") != ""
)


@pytest.mark.new_api
@given(component, component, item_id)
def test_typed_keys_parse_to_their_parts(kind: str, scope: str, iid: str) -> None:
    key = K.global_typed_key(kind, scope, iid)
    parsed = K.parse_key(key)
    assert parsed == K.ParsedKey("global_typed", iid, kind, scope)
    assert parsed.key == key and parsed.display == K.display_name(key)
    assert K.parse_typed(key) == (kind, scope, iid)
    assert key.startswith(K.global_typed_prefix(kind, scope))
    for marker, family in ((K.negative_key(key), "negative"), (K.lease_key(key), "lease")):
        inner = K.parse_key(marker)
        assert (inner.family, inner.target, inner.item, inner.key) == (family, parsed, parsed, marker)
        assert inner.internal and K.is_internal(marker)


@pytest.mark.new_api
@given(item_id)
def test_untyped_keys_read_back_to_the_same_text(iid: str) -> None:
    key = K.global_key(iid)
    parsed = K.parse_key(key)
    assert parsed.key == key and parsed.display == iid
    # An id with two colons is the typed key of its parts (the documented ambiguity), never anything else.
    assert parsed.family == ("global_typed" if K.parse_typed(key) else "global")


@pytest.mark.new_api
@given(component, component, item_id)
def test_organ_keys_parse(organ: str, kind: str, iid: str) -> None:
    typed = K.organ_typed_key(organ, kind, iid)
    assert K.parse_key(typed) == K.ParsedKey("organ_typed", iid, kind, organ_id=organ)
    untyped = K.parse_key(K.organ_key(organ, iid))
    assert untyped.key == K.organ_key(organ, iid) and untyped.organ_id == organ


@pytest.mark.new_api
@pytest.mark.parametrize(
    "key",
    [
        "global:item:",
        "global:item:global:item:x",
        "organ:a",
        "organ:a:b:item:x",
        "mw:neg:mw:lease:global:item:x",
        "mw:neg:",
        "task:by_id:1",
        "global:item:a\x00b",
        "",
    ],
)
def test_keys_outside_the_grammar_are_refused(key: str) -> None:
    assert K.try_parse_key(key) is None
    with pytest.raises(KeyGrammarError) as info:
        K.parse_key(key)
    assert info.value.part == "key"


@pytest.fixture(scope="module")
def manager() -> Iterator[MwManager]:
    m = MwManager("parse-agent", MwConfig(namespace=f"kp{uuid.uuid4().hex[:8]}", mlt_dsn="sqlite://"))
    yield m
    m.close()


@pytest.mark.new_api
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=component, scope=component, iid=item_id, task=st.one_of(st.integers(0, 10**12), item_id))
def test_every_key_the_runtime_touches_parses(
    manager: MwManager, kind: str, scope: str, iid: str, task: object
) -> None:
    """Every key any tier reads, writes or deletes during every kind of call, read back by the exported parser."""
    seen: list[KeyEvent] = []
    remove = add_observer(seen.append)
    try:
        manager.set_global_item_typed(kind, scope, iid, {"v": 1}, ttl_s=30)
        assert manager.get_item_typed(kind, scope, iid) == {"v": 1}
        manager.get_or_load(kind, scope, iid + "-absent", loader=lambda: None)  # a negative marker, a lease
        manager.set_global_item(iid, 2)
        manager.get_item(iid)
        manager.set_item(iid, 3)
        manager.set_organ_item_typed(kind, iid, 4)
        manager.cache_task_row({"id": task, "status": "running"})
        manager.get_task(task)
        manager.invalidate_task(task)
        assert manager.try_set_inflight(K.global_typed_key(kind, scope, iid), 5)
        manager.release_inflight(K.global_typed_key(kind, scope, iid))
        manager.del_global_item_typed(kind, scope, iid)
        manager.del_global_key(iid)
    finally:
        remove()
    assert seen
    for event in seen:
        parsed = K.parse_key(event.key)
        assert parsed.key == event.key
        expected_tier = parsed.family if parsed.internal else event.tier
        assert event.tier == expected_tier, event
    keys = {e.key for e in seen}
    assert K.global_typed_key(kind, scope, iid) in keys
    assert K.task_key(task) in keys
    assert K.negative_key(K.global_typed_key(kind, scope, iid + "-absent")) in keys
