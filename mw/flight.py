"""In-process single flight: concurrent misses of one key run one load, whoever asks and from where.

The first caller of a key leads; every later caller (a thread, an asyncio task on any loop, a
split-phase plan) follows: it waits on the entry's ``concurrent.futures.Future``, which the
runtime owns, not on the leader's task or loop. The leader lands the entry with its value or its
``Exception``. A leader that stops without an outcome (cancelled, its loop closed, its plan dropped,
a ``BaseException``) *abandons* the entry: followers get :data:`ABANDONED` and one of them leads the
next attempt. No follower ever sees someone else's ``BaseException``.

A local drop or flush (an invalidation, a bus gap) *forgets* the entries of the dropped keys: their
leaders read the store before the drop, so a caller arriving after it must not be handed that value.
It starts a flight of its own; the forgotten leader still lands its own followers, who came before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any


class _Abandoned:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABANDONED"


ABANDONED: Any = _Abandoned()
"""What a follower receives when the leader stopped without an outcome: lead the next attempt."""


class Entry:
    """One load in flight: its future and the event loop of its leader (``None``: a thread)."""

    __slots__ = ("future", "key", "loop")

    def __init__(self, key: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self.key = key
        self.loop = loop
        self.future: Future[Any] = Future()

    def leader_gone(self) -> bool:
        """The leader's loop is closed: nothing will ever land this entry."""
        return self.loop is not None and self.loop.is_closed() and not self.future.done()


class Flight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Entry] = {}
        self.joined = 0
        self.abandoned = 0
        self.forgotten = 0

    def join(self, key: str, loop: asyncio.AbstractEventLoop | None) -> tuple[Entry, bool]:
        """``(entry, leads)``: the key's entry in flight, and whether this caller is its leader."""
        with self._lock:
            entry = self._calls.get(key)
            if entry is not None and not entry.leader_gone():
                self.joined += 1
                return entry, False
            entry = self._calls[key] = Entry(key, loop)
            return entry, True

    def lead_if_idle(self, key: str, loop: asyncio.AbstractEventLoop | None) -> Entry | None:
        """Lead a load of ``key`` only if none is in flight (XFetch, prewarm): never waits."""
        with self._lock:
            if key in self._calls:
                return None
            entry = self._calls[key] = Entry(key, loop)
            return entry

    def forget(self, keys: Iterable[str]) -> int:
        """Later callers of ``keys`` no longer join the loads in flight now (they began before a drop)."""
        with self._lock:
            gone = sum(self._calls.pop(key, None) is not None for key in keys)
            self.forgotten += gone
            return gone

    def forget_all(self) -> int:
        """As :meth:`forget`, for every key (a flush)."""
        with self._lock:
            gone = len(self._calls)
            self._calls.clear()
            self.forgotten += gone
            return gone

    def in_flight(self, key: str) -> bool:
        return key in self._calls

    def __len__(self) -> int:
        return len(self._calls)

    def _settle(self, entry: Entry, result: Any = None, error: Exception | None = None) -> bool:
        """Remove the entry and give its future the outcome, once (a leader and a follower may race)."""
        with self._lock:
            if self._calls.get(entry.key) is entry:
                del self._calls[entry.key]
            if entry.future.done():
                return False
            if error is not None:
                entry.future.set_exception(error)
            else:
                entry.future.set_result(result)
            return True

    def land(self, entry: Entry, value: Any) -> None:
        self._settle(entry, value)

    def fail(self, entry: Entry, error: Exception) -> None:
        self._settle(entry, error=error)

    def abandon(self, entry: Entry) -> None:
        if self._settle(entry, ABANDONED):
            self.abandoned += 1

    def abandon_key(self, key: str) -> bool:
        """Abandon the load of ``key`` in flight, if any: its leader is gone and will never land it.

        For a leader whose process died with its flight (the simulator's crashed agent, whose fleet shares
        one process): its followers lead the next attempt, and meet its lease in L2 like any other process.
        """
        with self._lock:
            entry = self._calls.get(key)
        if entry is None:
            return False
        self.abandon(entry)
        return True
