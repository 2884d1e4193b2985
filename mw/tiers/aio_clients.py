"""One redis.asyncio client per event loop, closed on that loop when the loop shuts down.

redis.asyncio connections belong to the loop that opened them, so each loop needs its own client.
The client holds its loop (through its streams), so a cache keyed weakly by the loop never lets go:
one client and one socket per ``asyncio.run`` forever. Instead each client is tied to its loop's end
with an async generator the loop knows about: ``asyncio.run``, ``asyncio.Runner`` and any loop shut
down the documented way call ``loop.shutdown_asyncgens()``, which closes the generator *on the loop*,
and its ``finally`` closes the client there and forgets it. (A background task would do the same but
shows in ``asyncio.all_tasks()``, where "wait for every task" shutdown code would wait for it forever.)

A loop closed without ``shutdown_asyncgens()`` cannot run the close any more: its entry is dropped at
the next lookup from any loop, so the number of clients stays bounded; its sockets are then closed by
the garbage collector (with the ResourceWarning asyncio gives for its own transports in that case).

:meth:`LoopClients.close` on a loop that is idle (between two ``run_until_complete``, as pytest-asyncio's
module-scoped loop is between tests) hands the closer to a module-level list that keeps it until its loop
ends: the loop holds its async generators weakly, so a closer dropped with its manager would be finalized
by the garbage collector, and asyncio runs that close as a task the loop's shutdown does not wait for
(the connection is left unclosed: "Task was destroyed but it is pending").
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LoopClients"]

_AWAITING_END: dict[int, tuple[asyncio.AbstractEventLoop, AsyncGenerator[None, None]]] = {}
"""Closers of closed ``LoopClients`` whose loops were idle, by their client's id, until the loop ends (the
closer's ``finally`` removes its own; those of loops closed without shutting down are finished at the next
close)."""


@dataclass
class _Entry:
    client: Any
    closer: AsyncGenerator[None, None]


class LoopClients:
    """The client of the running loop, made by ``make()`` on first use there."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._entries: dict[asyncio.AbstractEventLoop, _Entry] = {}
        self._lock = threading.RLock()  # a closer finished by _prune takes it again

    def __len__(self) -> int:
        return len(self._entries)

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is not None:
            return entry.client
        # Only this thread runs ``loop``, so no other call can add an entry for it meanwhile.
        client = self._make()
        closer = self._close_at_end(loop, client)
        with contextlib.suppress(StopIteration):
            closer.asend(None).send(None)  # runs to its ``yield``: the loop now lists it for shutdown
        with self._lock:
            self._prune()
            self._entries[loop] = _Entry(client, closer)
        return client

    async def _close_at_end(self, loop: asyncio.AbstractEventLoop, client: Any) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._entries.get(loop)
                if entry is not None and entry.client is client:
                    del self._entries[loop]
            _AWAITING_END.pop(id(client), None)
            if not loop.is_closed():
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _prune(self) -> None:
        """Forget the clients of loops closed without shutting down their async generators (under the lock)."""
        for loop in [loop for loop in self._entries if loop.is_closed()]:
            closer = self._entries.pop(loop).closer
            with contextlib.suppress(StopIteration, RuntimeError):
                closer.aclose().send(None)  # finishes it here (no await: the loop is closed), no GC finalizer

    async def aclose_current(self) -> None:
        """Close the running loop's client now (for code that manages its own loops)."""
        entry = self._entries.get(asyncio.get_running_loop())
        if entry is not None:
            await entry.closer.aclose()

    def close(self) -> None:
        """Close the clients of running loops on their loops; idle loops close theirs when they shut down."""
        _finish_ended()
        with self._lock:
            self._prune()
            running = [(loop, entry) for loop, entry in self._entries.items() if loop.is_running()]
            for loop, entry in self._entries.items():
                if not loop.is_running():
                    _AWAITING_END[id(entry.client)] = (loop, entry.closer)
        for loop, entry in running:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                asyncio.run_coroutine_threadsafe(self._finish(entry), loop)

    @staticmethod
    async def _finish(entry: _Entry) -> None:
        await entry.closer.aclose()


def _finish_ended() -> None:
    """Finish the kept closers whose loops closed without shutting their async generators down."""
    for key, (loop, closer) in list(_AWAITING_END.items()):
        if loop.is_closed() and _AWAITING_END.pop(key, None) is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                closer.aclose().send(None)
