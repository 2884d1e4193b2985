"""The fault seam: named points at every L2 and Mlt call boundary and every read-through step.

Tests, the simulator and ``tools/explore`` install an *injector* here to delay, fail or drop a call,
or to act on the world at that moment (pause or restart a server). With no injector installed a point
costs one truth test of a module-level list, as :mod:`mw.observe` does, so the seam stays in
production code.

Points are named ``<layer>.<operation>``; an operation's reply (after the command ran) is
``<layer>.<operation>.reply``, so a test can lose the answer of a write that did land:

* ``l2.get``, ``l2.mget``, ``l2.set``, ``l2.set_nx``, ``l2.delete``, ``l2.script``, ``l2.publish``,
  ``l2.subscribe``, ``l2.pttl``, ``l2.scan`` (each also ``.reply``; a multi-key command passes its first
  logical key, ``l2.publish`` its channel, ``l2.scan`` its pattern);
* ``mlt.connect``, ``mlt.get_item``, ``mlt.put_item``, ``mlt.delete_item``, ``mlt.get_task``,
  ``mlt.put_task``, ``mlt.delete_task`` (each but ``mlt.connect`` also ``.reply``: the statement ran, so a
  write failed there is in doubt);
* ``protocol.<step>``: the read-through steps of :mod:`mw.protocol` (``lookup``, ``negative``, ``join``,
  ``acquire``, ``recheck``, ``load``, ``fill``, ``release``, ``wait``, ``flight_wait``).

An injector is a callable ``(point, key) -> Action | None``. Actions: :class:`Delay`, :class:`Fail`
(raise this exception, as if the server or driver had), :class:`Drop` (close the connection, then
raise a connection error) and :class:`Act` (run a function, then go on).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Fail:
    error: BaseException


@dataclass(frozen=True)
class Drop:
    """Close the caller's connection (when the point gives a way to), then fail with ``ConnectionError``."""


@dataclass(frozen=True)
class Act:
    run: Callable[[], object]


Action = Delay | Fail | Drop | Act
Injector = Callable[[str, str | None], Action | None]

INJECTORS: list[Injector] = []
_lock = threading.Lock()


def install(injector: Injector) -> Callable[[], None]:
    """Install ``injector``; returns the function that removes it."""
    with _lock:
        INJECTORS.append(injector)

    def remove() -> None:
        with _lock:
            if injector in INJECTORS:
                INJECTORS.remove(injector)

    return remove


@contextlib.contextmanager
def injected(injector: Injector) -> Iterator[None]:
    remove = install(injector)
    try:
        yield
    finally:
        remove()


def _actions(name: str, key: str | None) -> list[Action]:
    out = []
    for injector in list(INJECTORS):
        action = injector(name, key)
        if action is not None:
            out.append(action)
    return out


def _dropped(name: str, drop: Callable[[], object] | None) -> ConnectionError:
    if drop is not None:
        with contextlib.suppress(Exception):
            drop()
    return ConnectionError(f"connection dropped at {name} (injected)")


def point(name: str, key: str | None = None, drop: Callable[[], object] | None = None) -> None:
    """A sync call boundary. Callers guard it with ``if INJECTORS:`` so that it costs nothing when off."""
    for action in _actions(name, key):
        if isinstance(action, Delay):
            time.sleep(action.seconds)
        elif isinstance(action, Act):
            action.run()
        elif isinstance(action, Fail):
            raise action.error
        else:
            raise _dropped(name, drop)


async def apoint(name: str, key: str | None = None, drop: Callable[[], object] | None = None) -> None:
    """An asyncio call boundary: a delay awaits instead of blocking the loop."""
    for action in _actions(name, key):
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, Act):
            action.run()
        elif isinstance(action, Fail):
            raise action.error
        else:
            raise _dropped(name, drop)
