"""When does the Ray node-cache actor pay off? Its get against an in-process L1 and a direct Redis GET.

Everything is measured inside one Ray actor (agents are actors), on one 1 KiB envelope, in one run:

* in-process ``L1Cache.get`` (what agents in one process share);
* a direct Redis ``GET`` on one connection (what an L1 miss costs next: L2);
* ``RayNodeL1.get`` (the node actor, sync with its timeout), ``get_async`` one at a time, and
  ``get_async`` with 32 reads in flight (throughput of one agent's event loop);
* the read path an agent sees: ``MwManager.get_item_typed`` answered by the node actor vs by Redis.

Then it prints the break-even: with an L1 hit ratio ``h``, a read through the node actor costs
``actor + (1 - h) * redis`` against ``redis`` without it, so the node actor pays off when a Redis GET costs
more than ``actor / h``.

    python benchmarks/ray_l1.py [--reads 3000] [--redis-url URL] [--address auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _redis import redis_url_or_throwaway

ROOT = Path(__file__).resolve().parents[1]
VALUE_BYTES = 1024


def pct(samples: list[float], p: float) -> float:
    data = sorted(samples)
    return data[min(len(data) - 1, int(p * len(data)))]


def timed(fn: Any, n: int) -> list[float]:
    """Seconds per call, one sample per call."""
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def row(name: str, samples: list[float], ops_s: float | None = None) -> dict[str, Any]:
    p50 = pct(samples, 0.5)
    return {
        "name": name,
        "p50_us": round(p50 * 1e6, 2),
        "p99_us": round(pct(samples, 0.99) * 1e6, 2),
        "ops_s": round(ops_s if ops_s is not None else 1 / statistics.fmean(samples)),
    }


class Bench:
    """The measuring actor: it owns the tiers, as an agent would."""

    def run(self, redis_url: str, reads: int) -> dict[str, Any]:
        import redis

        from mw import MwConfig, MwManager, close_all
        from mw.clock import system_clock
        from mw.codec import Codec
        from mw.keys import global_typed_key
        from mw.ray import RayNodeL1, kill_node_caches
        from mw.tiers.l1 import L1Cache

        ns = f"bench-ray-l1-{uuid.uuid4().hex[:8]}"
        config = MwConfig(redis_url=redis_url, namespace=ns)
        key = global_typed_key("doc", "bench", "x")
        now = system_clock()
        data = Codec(config.codec, config.compress_min_bytes, config.max_value_bytes).encode(
            "x" * VALUE_BYTES, now + 3600, key
        )
        results: list[dict[str, Any]] = []

        # In-process L1: batches (one sample per call would measure the timer).
        l1 = L1Cache(1000, 60.0, system_clock)
        l1.set(key, data, now + 3600)
        batch = 10_000
        per_call = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(batch):
                l1.get(key)
            per_call.append((time.perf_counter() - t) / batch)
        results.append(row("in-process L1Cache.get", per_call, 1 / statistics.median(per_call)))

        client = redis.Redis.from_url(redis_url)
        client.set(f"{ns}:{key}", data, px=3_600_000)
        client.get(f"{ns}:{key}")
        results.append(row("Redis GET (one connection)", timed(lambda: client.get(f"{ns}:{key}"), reads)))

        tier = RayNodeL1.for_config(config)
        assert tier.wait_ready(60), "node cache did not start"
        tier.set(key, data, now + 3600)
        tier.flush()
        assert tier.get(key) == data
        results.append(row("node actor RayNodeL1.get (sync)", timed(lambda: tier.get(key), reads)))

        async def one_at_a_time() -> list[float]:
            out = []
            for _ in range(reads):
                t = time.perf_counter()
                await tier.get_async(key)
                out.append(time.perf_counter() - t)
            return out

        results.append(row("node actor get_async, 1 in flight", asyncio.run(one_at_a_time())))

        async def in_flight(k: int) -> tuple[list[float], float]:
            lat: list[float] = []

            async def one() -> None:
                t = time.perf_counter()
                await tier.get_async(key)
                lat.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            for _ in range(max(1, reads // k)):
                await asyncio.gather(*(one() for _ in range(k)))
            return lat, len(lat) / (time.perf_counter() - t0)

        lat, ops = asyncio.run(in_flight(32))
        results.append(row("node actor get_async, 32 in flight", lat, ops))

        # The read an agent sees after an L0 miss: answered by the node actor, or by Redis (no node actor).
        with_actor = MwManager("bench-actor", config, node="bench-ray", l1=tier)
        with_actor.set_global_item_typed("doc", "bench", "y", "y" * VALUE_BYTES)
        tier.flush()

        def via_actor() -> None:
            with_actor.l0.clear()
            with_actor.get_item_typed("doc", "bench", "y")

        results.append(row("agent read: L0 miss -> node actor hit", timed(via_actor, reads)))
        plain = MwManager("bench-redis", config.replace(l1_ttl_s=0.0), node="bench-plain")
        plain.get_item_typed("doc", "bench", "y")

        def via_redis() -> None:
            plain.l0.clear()
            plain.get_item_typed("doc", "bench", "y")

        results.append(row("agent read: L0 miss -> L2 (Redis) hit", timed(via_redis, reads)))
        stats = tier.stats()
        with_actor.close()
        plain.close()
        close_all()
        client.delete(*client.keys(f"{ns}:*"))
        client.close()
        kill_node_caches(ns)
        return {"results": results, "tier": stats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=3000, help="samples per measurement")
    ap.add_argument("--redis-url", default=None, help="default: a throwaway local redis-server")
    ap.add_argument("--address", default=None, help="a Ray cluster to join (default: start a local one)")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import ray

    with redis_url_or_throwaway(args.redis_url) as url:
        t = time.perf_counter()
        if args.address:
            ray.init(address=args.address, logging_level=logging.WARNING)
        else:
            store = 100 * 1024 * 1024
            ray.init(num_cpus=2, include_dashboard=False, object_store_memory=store, logging_level=logging.WARNING)
        init_s = time.perf_counter() - t
        try:
            remote_bench: Any = ray.remote(num_cpus=0)(Bench)
            bench = remote_bench.remote()
            out: dict[str, Any] = ray.get(bench.run.remote(url, args.reads))
        finally:
            t = time.perf_counter()
            ray.shutdown()
            shutdown_s = time.perf_counter() - t
    results = out["results"]
    print(f"ray {ray.__version__}; ray.init {init_s:.2f}s, ray.shutdown {shutdown_s:.2f}s; {args.reads} reads each")
    print(f"{'measurement':42} {'p50 us':>9} {'p99 us':>9} {'ops/s':>10}")
    for r in results:
        print(f"{r['name']:42} {r['p50_us']:>9} {r['p99_us']:>9} {r['ops_s']:>10}")
    by = {r["name"]: r for r in results}
    actor = by["node actor RayNodeL1.get (sync)"]["p50_us"]
    redis_get = by["Redis GET (one connection)"]["p50_us"]
    local = by["in-process L1Cache.get"]["p50_us"]
    print(f"\nnode actor get = {actor / redis_get:.1f}x a Redis GET = {actor / local:,.0f}x an in-process L1 get")
    for h in (0.5, 0.8, 0.95):
        print(f"  L1 hit ratio {h:.0%}: the node actor pays off once a Redis GET costs > {actor / h / 1000:.2f} ms")
    verdict = "pays off" if redis_get > actor else "does not pay off"
    print(
        f"here (Redis on loopback, {redis_get:.0f} us) the node actor {verdict} on latency; it pays off for a "
        f"Redis far away (> {actor / 1000:.1f} ms a GET) or saturated: the reads it answers never reach Redis."
    )
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
