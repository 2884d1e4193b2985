"""The L2 copy a write could not replace: never served after the outage, deleted once L2 answers.

Found by ``mw-sim run redis-outage``: a write made while L2 was down left the old value in L2, and every reader
after the outage got it for its whole TTL. An outage here is the fault seam failing every L2 call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from waits import until

from mw import MwManager
from mw import keys as K
from mw.faults import Fail, injected
from mw.tiers import MISS

Make = Callable[..., MwManager]
KEY = K.global_typed_key("doc", "s", "1")


@pytest.fixture
def down() -> Callable[[], Iterator[None]]:
    def fail_l2(point: str, _key: str | None) -> Fail | None:
        return Fail(ConnectionError("Redis down (injected)")) if point.startswith("l2.") else None

    return lambda: injected(fail_l2)  # type: ignore[return-value]


def _v2_written_while_down(make_manager: Make, down: Callable[[], object]) -> tuple[MwManager, MwManager]:
    """``a`` wrote v1, then v2 while L2 was down; ``b`` is another node of the same process."""
    a = make_manager("a", tier_retry_s=0.0)
    b = make_manager("b", node="n2", tier_retry_s=0.0)
    a.set_global_item_typed("doc", "s", "1", "v1")
    with down():  # type: ignore[attr-defined]
        a.set_global_item_typed("doc", "s", "1", "v2")
    return a, b


def test_a_write_l2_missed_leaves_no_old_value_to_serve(make_manager: Make, down: Callable[[], object]) -> None:
    a, b = _v2_written_while_down(make_manager, down)
    assert a.cluster.pending.deletes(KEY), "the old copy is to be deleted"
    assert a.l2.get(KEY) is not None, "L2 still holds v1 until the replay"
    assert b.get_item_typed("doc", "s", "1") is None, "v1 is not served (Mlt has no such item here: absent)"
    a.cluster.replay()
    assert a.l2.get(KEY) is None and not a.cluster.pending.deletes(KEY)


def test_a_fresh_fill_settles_the_pending_delete(make_manager: Make, down: Callable[[], object]) -> None:
    """A lease holder's fill put a fresh value in L2: it is served, not ignored until the replay lands.

    The replay (a thread of its own, started when L2 answers again) may delete the lease under the load: then the
    fill is refused (a stale set prevented), L2 holds no fresh copy to hide, and the delete stays on its way until
    the replay is sent (two CI runs under load saw that)."""
    a, b = _v2_written_while_down(make_manager, down)
    assert b.get_or_load("doc", "s", "1", lambda: "v2") == "v2"
    refused = b.telemetry.stale_sets_prevented
    assert not a.cluster.pending.deletes(KEY) or refused == 1
    assert until(lambda: not a.cluster.pending.deletes(KEY)), "the pending delete was neither settled nor replayed"
    c = make_manager("c", node="n3", tier_retry_s=0.0)
    # The replay (a thread of its own) may still delete the fresh copy: harmless, a miss; never the old value.
    assert c.get_or_load("doc", "s", "1", lambda: "v2") == "v2"


def test_a_read_begun_before_a_replay_does_not_serve_what_it_deleted(make_manager: Make) -> None:
    """The replay runs on a thread of its own: a read that got the old copy just before its DEL landed drops it."""
    a = make_manager("a", tier_retry_s=0.0)
    a.set_global_item_typed("doc", "s", "1", "v1")
    data = a.l2.get(KEY)
    assert data is not None
    gen = a.cluster.generation
    a.cluster.unreached([KEY], None, [KEY])
    a.cluster.replay()
    assert a.tiers.accept(KEY, data, gen, from_l2=True) is MISS
    assert a.tiers.accept(KEY, data, a.cluster.generation, from_l2=True) == "v1", "a read begun after it is served"
