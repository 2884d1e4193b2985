"""Waiting for a condition in the tests on real topologies: polled, bounded, never a wall-clock assertion."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(cond: Callable[[], bool], timeout_s: float = 30.0, ignore: tuple[type[BaseException], ...] = ()) -> bool:
    """Poll ``cond`` until it holds or ``timeout_s`` passed; ``ignore``: exceptions that mean "not yet" (a node
    still restarting). The last answer is returned, so ``assert until(...)`` fails with the condition unmet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except ignore:
            pass
        time.sleep(0.01)
    return cond()
