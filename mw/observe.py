"""A supported hook for seeing every key the tiers read, write and delete.

The pytest plugin's key recorder (and anyone else's tooling) registers an observer here instead of
monkeypatching redis-py. Tiers call :func:`emit` only while at least one observer is registered, so
the cost on the hot path is one truth test of a module-level list.

Events name the tier as ``L0``, ``L1`` or ``L2``; internal keys are reported as tier ``negative`` or
``lease`` so that checks on item keys can ignore them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from mw.keys import LEASE_PREFIX, NEGATIVE_PREFIX


class KeyEvent(NamedTuple):
    op: str
    """``read``, ``write`` or ``delete``."""
    tier: str
    """``L0``, ``L1``, ``L2``, ``negative`` or ``lease``."""
    key: str


Observer = Callable[[KeyEvent], None]

OBSERVERS: list[Observer] = []
_lock = threading.Lock()


def add_observer(observer: Observer) -> Callable[[], None]:
    """Register ``observer``; returns a function that unregisters it."""
    with _lock:
        OBSERVERS.append(observer)

    def remove() -> None:
        with _lock:
            if observer in OBSERVERS:
                OBSERVERS.remove(observer)

    return remove


def _tier_of(tier: str, key: str) -> str:
    if key.startswith(NEGATIVE_PREFIX):
        return "negative"
    if key.startswith(LEASE_PREFIX):
        return "lease"
    return tier


def emit(op: str, tier: str, key: str) -> None:
    event = KeyEvent(op, _tier_of(tier, key), key)
    for observer in list(OBSERVERS):
        observer(event)
