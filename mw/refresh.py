"""When to refresh before expiry, and how to keep keys written together from expiring together.

XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB
2015): a reader recomputes early when ``now - delta * beta * ln(rand()) >= expiry``, where ``delta``
is how long the value took to load. ``-ln(rand())`` is exponentially distributed, so the chance of an
early refresh rises smoothly as expiry nears, and in expectation one reader of a hot key refreshes it
about ``delta * beta`` before it expires; a cold key is simply left to expire.

Jitter shortens each TTL by a random fraction up to ``jitter``, never lengthens it: a status TTL is
an upper bound the checklist relies on ("running tasks expire quickly").
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

Rand = Callable[[], float]


def xfetch_due(now: float, expire_at: float | None, delta: float, beta: float, rand: Rand = random.random) -> bool:
    if expire_at is None or delta <= 0 or beta <= 0:
        return False
    r = rand()
    if r <= 0.0:
        return True
    return now - delta * beta * math.log(r) >= expire_at


def jittered(ttl_s: float, jitter: float, rand: Rand = random.random) -> float:
    if jitter <= 0 or ttl_s <= 0:
        return ttl_s
    return ttl_s * (1.0 - jitter * rand())
