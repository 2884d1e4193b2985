"""Probes that tell whether a Redis or PostgreSQL server answers, used to wait for startup and to check noproc URLs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


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


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (``T``: stopped by a signal; ``S``, ``R``: alive), from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_stopped(leader: int, children: Sequence[int] = (), timeout: float = 5.0) -> None:
    """Return once ``leader`` and each of its ``children`` is stopped (state ``T``); a signal's delivery is
    asynchronous, so a SIGSTOP alone does not say a process has stopped yet.

    A child gone meanwhile is not waited for, nor one that exited and waits to be reaped (``Z``, ``X``): its parent,
    the leader, is stopped, so it would wait for ever. A leader that exited did not stop: ``ProcessLookupError``."""
    deadline = time.monotonic() + timeout
    pending = [leader, *children]
    while pending:
        pid = pending[0]
        try:
            state = process_state(pid)
        except (OSError, IndexError):
            state = "X"
        if state in ("T", "t"):
            pending.pop(0)
            continue
        if state in ("Z", "X"):
            if pid == leader:
                raise ProcessLookupError(f"process {pid} has exited (state {state!r}): it cannot be stopped")
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop within {timeout:g}s of SIGSTOP (state {state!r})")
        time.sleep(0.001)
