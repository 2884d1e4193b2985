"""Seeded samplers: Zipf popularity with a drifting hot set, and Mlt query latency.

Each sampler draws from a ``random.Random`` it is handed, never the module-level one, so a workload stream's numbers
depend only on its seed and on how many draws it made.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from array import array

from simulations.scenario import VALUE_BYTES_CAP, ItemsSpec, LatencySpec

_Z99 = 2.326347874


class Zipf:
    """Ranks ``0..n-1`` with P(rank k) proportional to ``1 / (k + 1) ** alpha``, by bisection on the cumulative weights.

    ``offset`` rotates which item holds which rank: moving it is how the working set drifts (yesterday's rank 0 becomes
    an ordinary item and ``offset`` new items enter the hot set).
    """

    __slots__ = ("_cum", "_total", "n", "offset")

    def __init__(self, n: int, alpha: float) -> None:
        if n < 1:
            raise ValueError(f"a Zipf population needs at least one item, got {n}")
        self.n = n
        self._cum = list(itertools.accumulate(1.0 / (k + 1) ** alpha for k in range(n)))
        self._total = self._cum[-1]
        self.offset = 0

    def rank(self, rng: random.Random) -> int:
        return min(bisect.bisect_left(self._cum, rng.random() * self._total), self.n - 1)

    def item(self, rng: random.Random) -> int:
        """An item index: its rank shifted by the current drift."""
        return (self.rank(rng) + self.offset) % self.n

    def drift(self, step: int) -> None:
        self.offset = (self.offset + step) % self.n


class Latency:
    """Simulated Mlt query latency in seconds: ``none``, ``fixed`` or ``lognormal`` (from its median and p99)."""

    def __init__(self, spec: LatencySpec, rng: random.Random) -> None:
        if spec.dist not in ("none", "fixed", "lognormal"):
            raise ValueError(f"[mlt] dist must be none, fixed or lognormal, not {spec.dist!r}")
        if spec.dist == "lognormal" and not 0 < spec.median_ms <= spec.p99_ms:
            raise ValueError("[mlt] lognormal latency needs 0 < median_ms <= p99_ms")
        self.dist = spec.dist
        self._rng = rng
        self._median = spec.median_ms / 1000
        self._mu = math.log(self._median) if self._median > 0 else 0.0
        self._sigma = math.log(spec.p99_ms / spec.median_ms) / _Z99 if spec.dist == "lognormal" else 0.0

    def __call__(self) -> float:
        if self.dist == "none":
            return 0.0
        if self.dist == "fixed":
            return self._median
        return self._rng.lognormvariate(self._mu, self._sigma)


def lognormal_params(median: float, p99: float) -> tuple[float, float]:
    """``(mu, sigma)`` of the lognormal with this median and 99th percentile."""
    return math.log(median), math.log(p99 / median) / _Z99


def item_sizes(spec: ItemsSpec, n: int, rng: random.Random) -> array[int]:
    """The size in bytes of each of ``n`` items: uniform (one ``randint`` each, as always) or lognormal, clipped to
    1 .. :data:`~simulations.scenario.VALUE_BYTES_CAP`. An array of ints: 200,000 sizes cost 800 KB, not 7 MB."""
    if spec.value_dist == "uniform":
        low, high = spec.value_bytes_min, spec.value_bytes_max
        return array("I", (rng.randint(low, high) for _ in range(n)))
    mu, sigma = lognormal_params(spec.value_bytes_median, spec.value_bytes_p99)
    draw = rng.lognormvariate
    return array("I", (min(VALUE_BYTES_CAP, max(1, round(draw(mu, sigma)))) for _ in range(n)))
