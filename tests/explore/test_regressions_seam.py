"""Explorer regressions that need the fault seam to provoke them (new API: ``tools/against-base``
reports them apart). F4: a dropped plan kept alive by its own caught exception."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

import pytest

from mw import MwManager, faults

pytestmark = pytest.mark.new_api
Make = Callable[..., MwManager]


def test_f4_a_dropped_plan_that_leads_without_the_lease_frees_its_followers_at_once(
    make_manager: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """L2 refused the lease, so the plan leads a local load; dropping it must abandon its flight now, not
    when a garbage collection finds the cycle its caught exception made (followers waited until their
    deadline). The warning is not captured here: a captured record holds the exception, and so the plan."""
    caplog.set_level(logging.ERROR, logger="mw")
    a, b = make_manager("a"), make_manager("b")
    failing = {"on": True}

    def refuse_lease(point: str, key: str | None) -> faults.Action | None:
        if failing["on"] and point == "l2.set_nx":
            return faults.Act(_refused)
        return None

    collecting = gc.isenabled()
    gc.disable()
    try:
        with faults.injected(refuse_lease):
            leader = a.begin_load("doc", "s", "1")
            assert leader.state == "lead" and leader.token is None, "L2 unreachable: a load without the lease"
            follower = b.begin_load("doc", "s", "1")
            assert follower.state == "wait"
            failing["on"] = False
            del leader  # the caller gave up on its load (its loader failed)
            follower = b.poll_load(follower)
        assert follower.state == "lead", "the follower still waits on a plan nobody holds"
    finally:
        if collecting:
            gc.enable()


def _refused() -> None:
    raise ConnectionRefusedError("injected: connection refused")
