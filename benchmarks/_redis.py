"""The Redis a benchmark measures against: the one named by ``--redis-url``, else a throwaway server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def redis_url_or_throwaway(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(ROOT))
    from pytest_mw.servers.redis_proc import RedisProcess

    proc = RedisProcess()
    proc.start()
    try:
        yield proc.url
    finally:
        proc.stop()
