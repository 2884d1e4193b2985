"""Probes that tell whether a Redis or PostgreSQL server answers, used to wait for startup and to check noproc URLs."""

from __future__ import annotations

import time
from collections.abc import Callable


def redis_ping(url: str, timeout: float = 2.0) -> None:
    """Raise unless the Redis server at ``url`` answers PING within ``timeout`` seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def postgres_ping(dsn: str, timeout: float = 2.0) -> None:
    """Raise unless the PostgreSQL server at ``dsn`` accepts a connection and runs ``SELECT 1``."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=max(1, round(timeout)), autocommit=True) as conn:
        conn.execute("SELECT 1")


def wait_until_ready(probe: Callable[[], None], timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Call ``probe`` until it stops raising; give up after ``timeout`` or as soon as ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            probe()
            return
        except Exception:
            if not alive() or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def mask(text: str) -> str:
    """:func:`mw.secrets.mask_secrets` (the one masking function), imported when first needed: importing the
    plugin loads no runtime."""
    from mw.secrets import mask_secrets

    return mask_secrets(text)


STOPPED_OR_GONE = frozenset("TtZX")
"""States :func:`wait_stopped` accepts: stopped, traced, exited (zombie) or dead."""


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (``T``: stopped by a signal; ``S``, ``R``: alive), from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_stopped(pids: list[int], timeout: float = 5.0) -> None:
    """Return once every process of ``pids`` is stopped (state ``T``); a signal's delivery is asynchronous, so a
    SIGSTOP alone does not say the process has stopped yet. Processes gone meanwhile are not waited for, nor those
    that exited and wait to be reaped (``Z``, ``X``): their parent is stopped, so they would wait for ever."""
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending:
        try:
            state = process_state(pending[0])
        except (OSError, IndexError):
            pending.pop(0)
            continue
        if state in STOPPED_OR_GONE:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pending[0]} did not stop within {timeout:g}s of SIGSTOP (state {state!r})")
        time.sleep(0.001)
