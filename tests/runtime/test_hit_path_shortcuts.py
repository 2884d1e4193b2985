"""The hit path's shortcuts answer what the long way answers: remembered keys, the manager's own L0 look, hot lists.

Each shortcut exists for speed only (docs/simulator.md, "Speed"); these tests pin that it changes nothing a caller
or an observer can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from mw import KeyGrammarError, MwManager, observe
from mw import keys as K
from mw.telemetry import HeavyHitters, hot_list

Make = Callable[..., MwManager]


@contextmanager
def l0_reads() -> Iterator[list[str]]:
    """The keys of every L0 read while inside (the public observer hook)."""
    seen: list[str] = []
    remove = observe.add_observer(lambda e: seen.append(e.key) if (e.op, e.tier) == ("read", "L0") else None)
    try:
        yield seen
    finally:
        remove()


def test_a_remembered_key_is_the_key_built_again() -> None:
    K.global_typed_key("doc", "s", "remembered-0")  # the prefix is checked and remembered on a first key
    first = K.global_typed_key("doc", "s", "remembered-1")
    assert first == "global:item:doc:s:remembered-1"
    assert K.global_typed_key("doc", "s", "remembered-1") is first  # the remembered one
    assert K.global_typed_key("doc", "s", "remembered-2") == "global:item:doc:s:remembered-2"


@pytest.mark.parametrize("bad", ["", "a\x00b", "global:item:x", "mw:neg:x", "x" * 257, "\ud800"])
def test_an_id_is_checked_whatever_was_remembered_before(bad: str) -> None:
    K.global_typed_key("doc", "s", "fine")  # the prefix and a key are remembered now
    with pytest.raises(KeyGrammarError, match="item_id"):
        K.global_typed_key("doc", "s", bad)
    with pytest.raises(KeyGrammarError, match="item_id"):  # and a refused id is never remembered
        K.global_typed_key("doc", "s", bad)


def test_a_str_subclass_or_a_non_str_id_takes_the_full_checks() -> None:
    class Name(str):
        pass

    K.global_typed_key("doc", "s", "sub")
    assert K.global_typed_key("doc", "s", Name("sub")) == "global:item:doc:s:sub"
    with pytest.raises(KeyGrammarError, match="must be a str"):
        K.global_typed_key("doc", "s", 7)  # type: ignore[arg-type]
    with pytest.raises(KeyGrammarError, match="must be a str"):
        K.global_typed_key("doc", "s", ["unhashable"])  # type: ignore[arg-type]


def test_begin_load_looks_at_l0_once(make_manager: Make) -> None:
    """The manager answers an L0 hit itself; a miss goes on to L1 without a second L0 read (an observer, such as
    the plugin's key recorder, sees one L0 read per call either way)."""
    m = make_manager("hp", pubsub=False)
    m.mlt.put_item("doc", "s", "1", "v1")
    key = K.global_typed_key("doc", "s", "1")
    with l0_reads() as seen:
        plan = m.begin_load("doc", "s", "1")
    assert (plan.state, seen) == ("lead", [key])
    assert m.finish_load(plan, "v1")
    hits = m.telemetry.l0_hits
    with l0_reads() as seen:
        plan = m.begin_load("doc", "s", "1")
    assert (plan.state, plan.value, seen, m.telemetry.l0_hits) == ("hit", "v1", [key], hits + 1)


def test_begin_task_looks_at_l0_once_and_counts_a_hit_once(make_manager: Make) -> None:
    m = make_manager("ht", pubsub=False)
    m.cache_task_row({"id": "t1", "status": "completed"})
    key = K.task_key("t1")
    before = (m.telemetry.l0_hits, m.telemetry.task_cache_hits, m.telemetry.task_cache_misses)
    with l0_reads() as seen:
        plan = m.begin_task("t1")
    assert (plan.state, seen) == ("hit", [key])
    after = (m.telemetry.l0_hits, m.telemetry.task_cache_hits, m.telemetry.task_cache_misses)
    assert after == (before[0] + 1, before[1] + 1, before[2])
    with l0_reads() as seen:
        miss = m.begin_task("t2")
    assert (miss.state, seen, m.telemetry.task_cache_misses) == ("lead", [K.task_key("t2")], before[2] + 1)


@pytest.mark.parametrize("top_n", [-3, -1, 0, 1, 2, 5, 50])
def test_hot_list_is_the_slice_it_was(top_n: int) -> None:
    pairs = [("global:item:a", 9), ("mw:neg:x", 8), ("global:item:b", 7), ("c", 7), ("mw:lease:y", 1), ("d", 1)]
    assert hot_list(pairs, top_n) == [[K.display_name(k), c] for k, c in pairs if not K.is_internal(k)][:top_n]


def test_top_keeps_the_order_of_equal_counts() -> None:
    hh = HeavyHitters(capacity=8)
    for key, n in [("a", 2), ("b", 3), ("c", 2), ("d", 3), ("e", 2)]:
        for _ in range(n):
            hh.add(key)
    assert [k for k, _ in hh.top(5)] == ["b", "d", "a", "c", "e"]
    assert [k for k, _ in hh.top(-2)] == ["b", "d", "a"]
