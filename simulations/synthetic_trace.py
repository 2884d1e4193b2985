"""A seeded synthetic trace for ``mw-sim replay`` where no real one is at hand (the sample report, the docs).

Poisson arrivals at ``rate`` requests per second; objects drawn by Zipf popularity whose hot set drifts by ``drift``
ranks every ``drift_every_s``; each object's size log-normal (median, p99), fixed per object. Written as
libCacheSim's oracleGeneral records, so it replays exactly as a downloaded trace would::

    python -m simulations.synthetic_trace trace.oracleGeneral.bin --requests 200000 --objects 20000 --seed 7
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

from simulations.distributions import Zipf, lognormal_params
from simulations.trace import Request, write_oracle_general


def synthetic_requests(
    requests: int,
    objects: int,
    *,
    alpha: float = 0.9,
    rate: float = 200.0,
    median_bytes: int = 1024,
    p99_bytes: int = 32768,
    drift: int = 50,
    drift_every_s: float = 60.0,
    seed: int = 7,
) -> Iterator[Request]:
    """``requests`` requests over ``objects`` objects; the same arguments give the same trace."""
    rng = random.Random(f"{seed}:trace")
    sizes = random.Random(f"{seed}:sizes")
    mu, sigma = lognormal_params(median_bytes, p99_bytes)
    size_of = [max(1, round(sizes.lognormvariate(mu, sigma))) for _ in range(objects)]
    popularity = Zipf(objects, alpha)
    t, next_drift = 0.0, drift_every_s
    for _ in range(requests):
        t += rng.expovariate(rate)
        while drift and t >= next_drift:
            popularity.drift(drift)
            next_drift += drift_every_s
        obj = popularity.item(rng)
        yield Request(float(int(t)), str(obj), size_of[obj])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.synthetic_trace", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the oracleGeneral file to write")
    parser.add_argument("--requests", type=int, default=200_000, help="number of requests (default 200000)")
    parser.add_argument("--objects", type=int, default=20_000, help="number of distinct objects (default 20000)")
    parser.add_argument("--alpha", type=float, default=0.9, help="Zipf exponent of popularity (default 0.9)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the trace (default 7)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.objects < 1 or args.rate <= 0 or args.alpha <= 0:
        parser.error("--requests, --objects, --rate and --alpha must be positive")
    n = write_oracle_general(
        args.out, synthetic_requests(args.requests, args.objects, alpha=args.alpha, rate=args.rate, seed=args.seed)
    )
    print(f"{args.out}: {n} requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
