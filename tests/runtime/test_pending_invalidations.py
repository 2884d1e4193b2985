"""The pending invalidations issue 9 adds: what a write made during an outage leaves to replay.

New API (``new_api``): ``tools/against-base`` reports these apart. That nothing stale is served after the
outage is shown failing on base by ``test_outage_writes.py``, whose outages (``world``) these reuse.
"""

from __future__ import annotations

import pytest
from test_outage_writes import K2, World, _wait, world  # noqa: F401 (world: a fixture)

pytestmark = pytest.mark.new_api


def test_changes_made_during_an_outage_stay_pending_until_replayed(world: World) -> None:  # noqa: F811
    a = world.make("a")
    a.set_global_item_typed("doc", "s", "2", "doomed")
    world.down()
    try:
        assert a.del_global_key(K2) is True
        assert a.cluster.pending
    finally:
        world.up()
    assert _wait(lambda: not a.cluster.pending), "replayed once L2 answers"


def test_pending_changes_are_bounded_and_settled_by_a_later_write() -> None:
    from mw.invalidation import PendingInvalidations

    pending = PendingInvalidations(max_keys=4, max_deletes=3)
    pending.add(["k1", "n1"], seq=7)
    pending.add(["k2"], seq=8, deletes=["k2", "lease:k2"])
    pending.settle(["k2", "lease:k2"])  # a later write of k2 reached L2 and invalidated it
    batch = pending.take()
    assert batch is not None and list(batch.keys) == ["k1", "n1"] and batch.seqs == {7, 8} and not batch.deletes
    assert pending and pending.take() is None, "one replay at a time; pending until it is sent"
    pending.restore(batch, seq=9)  # the replay failed: its own number is lost too
    pending.add([f"x{i}" for i in range(5)], seq=10, deletes=["d1", "d2", "d3", "d4"])
    batch = pending.take()
    assert batch is not None and batch.flush and not batch.keys and not batch.seqs, "too many keys: a flush"
    assert list(batch.deletes) == ["d1", "d2", "d3"] and pending.lost_deletes == 1
    pending.sent()
    assert not pending


def test_a_key_settled_while_its_replay_was_on_its_way_stays_settled_when_the_replay_fails() -> None:
    """The replay thread took the batch (its DEL still failing: L2 was down) while a fresh fill reached L2 and settled
    the key; the failed replay is put back without that delete. Found by a Redis Cluster CI run:
    ``test_a_fresh_fill_settles_the_pending_delete`` saw the delete pending again after the fill."""
    from mw.invalidation import PendingInvalidations

    pending = PendingInvalidations()
    pending.add(["k"], seq=1, deletes=["k", "lease:k"])
    pending.add(["other"], seq=2, deletes=["other"])
    batch = pending.take()
    assert batch is not None
    pending.settle(["k", "lease:k"])
    assert not pending.deletes("k")
    pending.restore(batch)
    assert not pending.deletes("k") and not pending.deletes("lease:k") and pending.deletes("other")
    again = pending.take()
    assert again is not None and list(again.deletes) == ["other"] and list(again.keys) == ["other"]
