"""In-process single flight: concurrent misses of one key run the loader once.

The first caller of a key leads: it runs the load and publishes the outcome on a
``concurrent.futures.Future`` that every later caller (a thread or an asyncio task, in any loop)
waits on. An error reaches every waiter and is not remembered: the next call loads again.

An async leader runs the load as its own task, so cancelling the caller that started it does not
cancel the load for the others; async waiters wait through ``asyncio.shield`` for the same reason.
A sync caller on the very thread whose event loop runs an async leader cannot block on it (the loop
would never finish the load), so it loads for itself instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Flight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[Future[Any], asyncio.AbstractEventLoop | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.joined = 0

    def _join(self, key: str, loop: asyncio.AbstractEventLoop | None) -> tuple[Future[Any], bool, Any]:
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                self.joined += 1
                return call[0], False, call[1]
            fut: Future[Any] = Future()
            self._calls[key] = (fut, loop)
            return fut, True, loop

    def _land(self, key: str, fut: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            if key in self._calls and self._calls[key][0] is fut:
                del self._calls[key]
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    def in_flight(self, key: str) -> bool:
        return key in self._calls

    def run(self, key: str, load: Callable[[], Any], alone: Callable[[], Any] | None = None) -> Any:
        """Load ``key`` once for all concurrent sync callers.

        ``alone`` is what a caller that cannot wait does instead (on the thread of the async leader's loop:
        waiting would block the very loop running the load); by default it runs ``load``.
        """
        fut, leader, leader_loop = self._join(key, None)
        if not leader:
            if leader_loop is not None and leader_loop is _running_loop():
                return (alone or load)()
            return fut.result()
        return self._lead_here(key, fut, load)

    def _lead_here(self, key: str, fut: Future[Any], load: Callable[[], Any]) -> Any:
        try:
            result = load()
        except BaseException as exc:
            self._land(key, fut, error=exc)
            raise
        self._land(key, fut, result)
        return result

    def run_if_idle(self, key: str, load: Callable[[], Any]) -> tuple[bool, Any]:
        """Lead a load of ``key`` only if none is in flight: ``(False, None)`` otherwise, without waiting."""
        with self._lock:
            if key in self._calls:
                return False, None
            fut: Future[Any] = Future()
            self._calls[key] = (fut, None)
        return True, self._lead_here(key, fut, load)

    async def run_async(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """Load ``key`` once for all concurrent callers; awaiting here never cancels the shared load."""
        loop = asyncio.get_running_loop()
        fut, leader, _ = self._join(key, loop)
        if leader:
            task = loop.create_task(self._lead(key, fut, load))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(asyncio.wrap_future(fut))

    async def _lead(self, key: str, fut: Future[Any], load: Callable[[], Awaitable[Any]]) -> None:
        try:
            result = await load()
        except BaseException as exc:
            self._land(key, fut, error=exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._land(key, fut, result)
