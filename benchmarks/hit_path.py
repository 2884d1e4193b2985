"""Hit-path speed of the runtime against the in-process caches people reach for, and L2 batch reads.

Everything is measured in this one run on this machine, so the ratios are what to read:

* In process, 100k string keys read in a seeded random order: ``dict.get`` (the floor),
  ``cachetools.LRUCache[k]`` and ``TTLCache[k]``, ``theine`` ``Cache.get``; ours as the raw S3-FIFO
  policy get, as ``L0Cache.get`` (expiry check + copy isolation) and as ``MwManager.get_item_typed``
  answered by L0 (key validation, hot-item count, telemetry included).
* L2: 100-key reads from a real local ``redis-server`` (a throwaway one unless ``--redis-url``):
  the raw ``MGET`` through our tier, and ``get_many_typed`` (MGET + decode + L1/L0 fill) with the
  local tiers emptied before every batch; fakeredis for reference.

Targets (issue 2): raw L0 get no slower than ``LRUCache[k]``; ``get_item_typed`` on an L0 hit within
10x ``dict.get``; L2 batch reads under 3 us per key on a real local Redis.

    python benchmarks/hit_path.py [--keys 100000] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from typing import Any

try:
    import mw
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    import mw

from _redis import redis_url_or_throwaway

from mw import MwConfig, MwManager
from mw import keys as K
from mw.policy.s3fifo import S3FIFO
from mw.tiers.l0 import L0Cache


def per_op_ns(fn: Callable[[], object], ops: int, repeat: int) -> float:
    """Median ns per operation over ``repeat`` runs of ``fn`` (which performs ``ops`` operations)."""
    fn()
    times = timeit.repeat(fn, number=1, repeat=repeat)
    return statistics.median(times) / ops * 1e9


def interleaved_ns(rows: list[tuple[str, Callable[[], object]]], ops: int, repeat: int) -> list[tuple[str, float]]:
    """Median ns/op of each contender, timed in turns so that machine noise hits them all alike."""
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _, fn in rows:
        fn()
    for _ in range(repeat):
        for name, fn in rows:
            samples[name].append(timeit.timeit(fn, number=1) / ops * 1e9)
    return [(name, statistics.median(samples[name])) for name, _ in rows]


def in_process(n_keys: int, repeat: int, seed: int) -> list[tuple[str, float]]:
    import cachetools
    import theine

    keys = [K.global_typed_key("doc", "team", str(i)) for i in range(n_keys)]
    order = keys[:]
    random.Random(seed).shuffle(order)
    far = time.time() + 10**6

    d = {k: "v" for k in keys}
    lru: Any = cachetools.LRUCache(maxsize=n_keys)
    ttl: Any = cachetools.TTLCache(maxsize=n_keys, ttl=10**6)
    th = theine.Cache(n_keys)
    policy = S3FIFO(n_keys)
    l0 = L0Cache(n_keys, None, time.time)
    for k in keys:
        lru[k] = ttl[k] = "v"
        th.set(k, "v")
        policy.set(k, "v")
        l0.set(k, "v", far, 1)

    ids = [k.rsplit(":", 1)[1] for k in order]
    manager = MwManager("bench", MwConfig(namespace=f"bench{uuid.uuid4().hex[:6]}", l0_max_items=n_keys))
    for item_id in ids:
        manager.set_global_item_typed("doc", "team", item_id, "v", ttl_s=10**6)

    def run_dict() -> None:
        get = d.get
        for k in order:
            get(k)

    def run_lru() -> None:
        for k in order:
            lru[k]

    def run_ttl() -> None:
        for k in order:
            ttl[k]

    def run_theine() -> None:
        get = th.get
        for k in order:
            get(k)

    def run_policy() -> None:
        get = policy.get
        for k in order:
            get(k)

    def run_l0() -> None:
        get = l0.get
        for k in order:
            get(k)

    def run_typed() -> None:
        get = manager.get_item_typed
        for i in ids:
            get("doc", "team", i)

    rows = [
        ("dict.get", run_dict),
        ("cachetools.LRUCache[k]", run_lru),
        ("cachetools.TTLCache[k]", run_ttl),
        ("theine Cache.get", run_theine),
        ("ours: S3FIFO.get (raw L0 policy)", run_policy),
        ("ours: L0Cache.get (TTL + isolation)", run_l0),
        ("ours: get_item_typed, L0 hit", run_typed),
    ]
    out = interleaved_ns(rows, n_keys, repeat)
    assert manager.telemetry.l0_hits >= n_keys, "get_item_typed must have been answered by L0"
    manager.close()
    return out


def l2_batches(url: str | None, batch: int, rounds: int) -> list[tuple[str, float]]:
    """Microseconds per key of a ``batch``-key read, median over ``rounds`` batches."""
    ns = f"bench{uuid.uuid4().hex[:8]}"
    config = MwConfig(redis_url=url, namespace=ns, l1_max_items=batch * 2)
    writer = MwManager("writer", config)
    reader = MwManager("reader", config, node="reader-node")
    ids = [str(i) for i in range(batch)]
    for i in ids:
        writer.set_global_item_typed("doc", "team", i, {"n": int(i), "title": f"document {i}"}, ttl_s=600)
    keys = [mw.keys.global_typed_key("doc", "team", i) for i in ids]
    tier = reader.l2

    def raw() -> None:
        tier.mget(keys)

    def full() -> None:
        reader.l0.clear()
        reader.l1.clear()
        got = reader.get_many_typed("doc", "team", ids)
        assert len(got) == batch

    out = [
        ("MGET via RedisTier.mget", per_op_ns(raw, batch, rounds) / 1000),
        ("get_many_typed (MGET+decode+fill)", per_op_ns(full, batch, rounds) / 1000),
    ]
    tier.delete(keys)
    writer.close()
    reader.close()
    mw.close_all()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--redis-url", default=None, help="an existing Redis; default: a throwaway redis-server")
    args = ap.parse_args()

    print(f"In-process hit path, {args.keys:,} keys, seeded random order, median of {args.repeat}")
    rows = in_process(args.keys, args.repeat, args.seed)
    base = rows[0][1]
    table = dict(rows)
    print(f"{'operation':40} {'ns/op':>9} {'x dict.get':>11}")
    for name, ns in rows:
        print(f"{name:40} {ns:9.1f} {ns / base:11.2f}")

    with redis_url_or_throwaway(args.redis_url) as url:
        real = l2_batches(url, args.batch, args.rounds)
    fake = l2_batches(None, args.batch, args.rounds)
    print(f"\nL2 reads, {args.batch}-key batches, median of {args.rounds}: us per key")
    print(f"{'read':40} {'real Redis':>11} {'fakeredis':>11}")
    for (name, us_real), (_, us_fake) in zip(real, fake, strict=True):
        print(f"{name:40} {us_real:11.2f} {us_fake:11.2f}")

    raw_ok = table["ours: S3FIFO.get (raw L0 policy)"] <= table["cachetools.LRUCache[k]"]
    typed_ratio = table["ours: get_item_typed, L0 hit"] / base
    l2_ok = real[0][1] < 3.0
    print()
    print(f"{'PASS' if raw_ok else 'FAIL'}: raw L0 get no slower than LRUCache[k]")
    print(f"{'PASS' if typed_ratio <= 10 else 'FAIL'}: get_item_typed L0 hit = {typed_ratio:.1f}x dict.get (<= 10x)")
    print(f"{'PASS' if l2_ok else 'FAIL'}: L2 batch read {real[0][1]:.2f} us/key on a real local Redis (< 3 us)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
