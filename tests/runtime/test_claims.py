"""In-flight claims (``try_set_inflight``) leave the manager's map when they expire, not never."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mw import MwManager
from mw import keys as K

Make = Callable[..., MwManager]


def test_expired_claims_are_swept_from_the_map(make_manager: Make) -> None:
    m = make_manager("a")
    for i in range(3000):
        assert m.try_set_inflight(K.global_typed_key("job", "claim", str(i)), 0.001)
    time.sleep(0.01)
    assert m.try_set_inflight(K.global_typed_key("job", "claim", "last"), 30)
    claims = vars(m).get("_claims", vars(m).get("_inflight"))  # the map's name before this fix: _inflight
    assert claims is not None and len(claims) <= 1024 + 1, "expired claims stay in the manager's map"


@pytest.mark.guard("ownership of a live claim is unchanged by the sweep; base had it right")
def test_a_live_claim_is_released_by_its_holder_only(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    key = K.global_typed_key("job", "claim", "x")
    assert a.try_set_inflight(key, 30) and not b.try_set_inflight(key, 30)
    assert b.release_inflight(key) is False
    assert a.release_inflight(key) is True and b.try_set_inflight(key, 30)
