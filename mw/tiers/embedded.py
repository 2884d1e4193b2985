"""The embedded L2: one in-process fake Redis (fakeredis) and the client the L2 tier drives it with.

Its TTLs run on the clock of the client that sends each command, the runtime's clock (:mod:`mw.clock`): a key
set with ``PX`` by a cluster on a simulated or manual clock expires when that clock says so, not when the wall
clock does. fakeredis stamps each database with ``time.time()`` before every command and decides every expiry
from that stamp; here the stamp is a property that reads the sending client's clock instead (the wall clock
for any other client, a plain ``fakeredis.FakeRedis`` of this server included). Without it a simulation that
runs slower than real time for a moment (a burst on a busy machine) lost leases and short-lived copies that
were still valid in simulated time, and a seed stopped replaying.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

from mw.clock import Clock, system_clock

__all__ = ["EMBEDDED_ATOMIC", "embedded_aclient", "embedded_client", "embedded_server", "follows_clocks"]

log = logging.getLogger("mw.l2")

EMBEDDED_ATOMIC = threading.RLock()
"""Embedded mode runs compare-and-set steps under this lock instead of Lua (fakeredis runs Lua slowly).

Every multi-command step that touches lease keys takes it, which gives those steps the atomicity a
real Redis gives a script: the fake server lives in this process, so this lock sees every client.
"""

_SENDER_CLOCK: contextvars.ContextVar[Clock] = contextvars.ContextVar("mw_embedded_clock", default=time.time)
"""The clock of the client whose command the fake server is running (a context variable: per thread and task)."""

_EMBEDDED: Any = None
_EMBEDDED_LOCK = threading.Lock()
_FOLLOWS = False


def embedded_server() -> Any:
    """The process's one fake Redis: every embedded cluster shares it, as processes share a real one."""
    global _EMBEDDED
    with _EMBEDDED_LOCK:
        if _EMBEDDED is None:
            import fakeredis

            server = fakeredis.FakeServer()
            _follow_sender_clocks(server)
            _EMBEDDED = server
        return _EMBEDDED


def follows_clocks() -> bool:
    """Whether the embedded server's TTLs follow each sender's clock (else, with a warning logged, the wall's)."""
    embedded_server()
    return _FOLLOWS


def _follow_sender_clocks(server: Any) -> None:
    """Give ``server``'s databases a ``time`` that reads the sending client's clock (see the module doc).

    The database class is taken from the server (fakeredis does not export it). A fakeredis that no longer
    stamps its databases this way keeps the wall clock, with a warning: TTLs then count wall seconds, the
    behaviour before this seam (``tests/runtime/test_embedded_clock.py`` fails on it).
    """
    global _FOLLOWS
    try:
        dbs = server.dbs
        make = dbs.default_factory
        base = type(make())

        def stamp(db: Any) -> float:
            return float(db.__dict__["_mw_now"])

        def restamp(db: Any, value: float) -> None:
            """fakeredis stamps each database with ``time.time()`` before a command, in the sender's thread and
            under the server lock: the stamp taken is the sender's clock instead, once per command as fakeredis's."""
            db.__dict__["_mw_now"] = _SENDER_CLOCK.get()()

        clocked = type("ClockedDatabase", (base,), {"time": property(stamp, restamp), "__module__": __name__})

        def new_db() -> Any:
            db = make()
            db.__class__ = clocked
            db.time = 0.0  # a first stamp (the creating thread's clock), replaced before the db's first command
            return db

        dbs.default_factory = new_db
        for index in list(dbs):
            dbs[index].__class__ = clocked
            dbs[index].time = 0.0
        token = _SENDER_CLOCK.set(lambda: 12_345.0)
        try:
            dbs[0].time = 0.0
            _FOLLOWS = dbs[0].time == 12_345.0
        finally:
            _SENDER_CLOCK.reset(token)
        dbs[0].time = 0.0
    except (AttributeError, TypeError) as exc:
        _FOLLOWS = False
        log.warning("The embedded Redis counts TTLs on the wall clock (this fakeredis has no database stamp: %s)", exc)


_EMBEDDED_CLIENT: Any = None


def embedded_client(server: Any, clock: Clock = system_clock) -> Any:
    """A redis-py client of the fake server that sends each command straight down its one connection, on
    ``clock`` (the server's TTLs follow it for this client's commands, see the module doc).

    It is ``fakeredis.FakeRedis`` (so ``redis.Redis``): every command is built by redis-py's command method,
    packed into RESP by its packer, parsed and run by fakeredis, and its reply read and converted by redis-py's
    connection and response callbacks, as with a real server. What it leaves out is the per-call machinery
    around that, which costs twice what fakeredis does for a ``GET`` and has nothing to act on in process: the
    connection pool's check-out and check-in (one connection, shared under the client's lock), the retry loop
    (nothing in process times out; a fake server switched off fails the first attempt, as a dead one fails
    the last) and redis-py 8's observability hooks (its OpenTelemetry recorder, which looks for a collector
    on every call when none is configured and has no switch to stop looking).
    """
    global _EMBEDDED_CLIENT
    if _EMBEDDED_CLIENT is None:
        import fakeredis
        import redis

        lost = (redis.ConnectionError, redis.TimeoutError)
        inside = threading.local()

        class EmbeddedRedis(fakeredis.FakeRedis):
            def execute_command(self, *args: Any, **options: Any) -> Any:
                client: Any = self  # redis-py's client and connection methods are untyped
                conn = client.connection
                if conn is None or getattr(inside, "command", False):
                    # Closed; or called while this thread is inside a command (a finalizer the garbage collector
                    # ran mid-command, releasing a dropped plan's lease): the lock is re-entrant, and the shared
                    # connection holds the outer command's reply, so this call takes a pooled one of its own.
                    return _pooled(client, args, options)
                with client.single_connection_lock:
                    inside.command = True
                    try:
                        conn.send_command(*args, check_health=False)
                        return client.parse_response(conn, args[0], **options)
                    except lost:
                        conn.disconnect()
                        raise
                    finally:
                        inside.command = False

        _EMBEDDED_CLIENT = EmbeddedRedis
    return _EMBEDDED_CLIENT(server=server, single_connection_client=True, connection_class=_on_clock(clock, False))


def embedded_aclient(server: Any, clock: Clock = system_clock) -> Any:
    """An asyncio client of the fake server (``fakeredis.FakeAsyncRedis``) on ``clock``."""
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=server, connection_class=_on_clock(clock, True))


def _on_clock(clock: Clock, asyncio: bool) -> Any:
    """A fakeredis connection class whose sends run on ``clock``: fakeredis runs each command as it is written
    (in the sending thread or task), so the sender's clock is set around the write. Single commands, pipelines
    and transactions all go through it."""
    import fakeredis

    if asyncio:

        class AsyncOnClock(fakeredis.FakeAsyncRedisConnection):
            async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                token = _SENDER_CLOCK.set(clock)
                try:
                    await super().send_packed_command(command, check_health)
                finally:
                    _SENDER_CLOCK.reset(token)

        return AsyncOnClock

    class OnClock(fakeredis.FakeRedisConnection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            token = _SENDER_CLOCK.set(clock)
            try:
                super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
            finally:
                _SENDER_CLOCK.reset(token)

    return OnClock


def _pooled(client: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """One command on a connection of the client's pool (the embedded client's fallback, see above)."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command(*args)
        return client.parse_response(conn, args[0], **options)
    finally:
        pool.release(conn)
