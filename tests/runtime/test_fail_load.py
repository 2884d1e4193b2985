"""A split-phase load that Mlt did not answer: ``fail_load`` releases the lease, hands the error to the callers that
joined, and caches nothing; above all no negative marker (absence is only what a load that answered says)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mw import MwManager
from mw import keys as K
from mw.errors import MltUnavailable
from mw.faults import Fail, injected

Make = Callable[..., MwManager]


def _mlt_down(point: str, _key: str | None) -> Fail | None:
    return Fail(ConnectionError("no answer (injected)")) if point.startswith("mlt.") else None


def test_a_read_while_mlt_is_down_leaves_no_negative_marker_and_the_item_is_served_after(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    a.mlt.put_item("doc", "s", "x", "v1")
    lead = a.begin_load("doc", "s", "x")
    follower = b.begin_load("doc", "s", "x")
    assert (lead.state, follower.state) == ("lead", "wait")
    with injected(_mlt_down), pytest.raises(MltUnavailable) as err:
        a.mlt.get_item("doc", "s", "x")
    a.fail_load(lead, err.value)
    assert lead.state == "failed"
    with pytest.raises(MltUnavailable):
        b.poll_load(follower)  # the follower gets the leader's error, not an answer
    assert not a.check_negative_cache("doc", "s", "x"), "Mlt down is not 'absent'"
    assert a.l2.get(K.lease_key(K.global_typed_key("doc", "s", "x"))) is None, "the lease is released"
    with injected(_mlt_down), pytest.raises(MltUnavailable):
        a.get_item_typed("doc", "s", "x")  # the blocking read: the same typed error, and no marker either
    assert not a.check_negative_cache("doc", "s", "x")
    assert b.get_item_typed("doc", "s", "x") == "v1", "once Mlt answers, the item is served"


def test_fail_load_takes_a_lead_plan_only(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("doc", "s", "x", "v1")
    hit = a.begin_load("doc", "s", "x")
    with pytest.raises(ValueError, match="fail_load\\(\\) takes a 'lead' plan"):
        a.fail_load(hit, MltUnavailable("x"))
