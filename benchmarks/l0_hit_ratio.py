"""L0 policy report: object hit ratio on seeded Zipf traces, then raw ``get`` speed on hits.

Every policy sees the identical trace: it is generated once per alpha, written as a libCacheSim
oracleGeneral file (which carries next-access times, so Belady is exact), replayed from that
file by libCacheSim, and replayed from the same array by the Python caches. Sanity checks:
libCacheSim LRU must equal cachetools LRU, and Belady must beat every other policy.

    python benchmarks/l0_hit_ratio.py                          # 1M requests over 100k objects
    python benchmarks/l0_hit_ratio.py --requests 100000 --objects 10000   # quick run

Always exits 0: it is a report; read the verdict lines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

import cachetools
import libcachesim as lcs
import theine
from _zipf import write_oracle_general, zipf_trace

try:
    from mw.policy import S3FIFO
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mw.policy import S3FIFO

ALPHAS = (0.8, 1.0, 1.2)
CACHE_FRACTIONS = (0.01, 0.10)
WTLFU_TOLERANCE = 0.01
LRU_MARGIN = 0.08
LCS_POLICIES: dict[str, Callable[[int], lcs.CacheBase]] = {
    "lcs LRU": lcs.LRU,
    "lcs S3FIFO": lcs.S3FIFO,
    "lcs WTinyLFU": lcs.WTinyLFU,
    "Belady": lcs.Belady,
}


def hit_ratio_ours(keys: list[int], size: int) -> float:
    cache = S3FIFO(size)
    get, put = cache.get, cache.set
    hits = 0
    for k in keys:
        if get(k) is None:
            put(k, True)
        else:
            hits += 1
    return hits / len(keys)


def hit_ratio_cachetools_lru(keys: list[int], size: int) -> float:
    cache: cachetools.LRUCache[int, bool] = cachetools.LRUCache(size)
    hits = 0
    for k in keys:
        if k in cache:
            cache[k]
            hits += 1
        else:
            cache[k] = True
    return hits / len(keys)


def hit_ratio_lcs(policy: Callable[[int], lcs.CacheBase], trace_file: Path, size: int) -> float:
    reader = lcs.TraceReader(str(trace_file), lcs.TraceType.ORACLE_GENERAL_TRACE)
    miss_ratio, _ = policy(size).process_trace(reader)
    return 1.0 - miss_ratio


def hit_ratio_section(n_requests: int, n_objects: int, seed: int) -> bool:
    print(f"== Object hit ratio: Zipf, {n_requests:,} requests over {n_objects:,} objects, seed {seed}")
    cols = ["ours S3FIFO", "cachetools LRU", *LCS_POLICIES, "ours-WTLFU", "ours-LRU"]
    header = f"{'alpha':>5} {'cache':>13} " + " ".join(f"{c:>14}" for c in cols) + "  checks"
    print(header)
    print("-" * len(header))
    ok = True
    tolerance = 0.5 / n_requests
    with tempfile.TemporaryDirectory(prefix="l0_hit_ratio_") as tmp:
        for alpha in ALPHAS:
            trace = zipf_trace(n_objects, n_requests, alpha, seed)
            trace_file = write_oracle_general(trace, Path(tmp) / f"zipf_{alpha}.oracleGeneral.bin")
            keys = trace.tolist()
            for fraction in CACHE_FRACTIONS:
                size = max(10, int(n_objects * fraction))
                row = {
                    "ours S3FIFO": hit_ratio_ours(keys, size),
                    "cachetools LRU": hit_ratio_cachetools_lru(keys, size),
                }
                row.update({name: hit_ratio_lcs(p, trace_file, size) for name, p in LCS_POLICIES.items()})
                d_wtlfu = row["ours S3FIFO"] - row["lcs WTinyLFU"]
                d_lru = row["ours S3FIFO"] - row["cachetools LRU"]
                notes = []
                if abs(row["lcs LRU"] - row["cachetools LRU"]) > tolerance:
                    notes.append("HARNESS: lcs LRU != cachetools LRU")
                if any(v > row["Belady"] + tolerance for k, v in row.items() if k != "Belady"):
                    notes.append("HARNESS: a policy beats Belady")
                if d_wtlfu < -WTLFU_TOLERANCE:
                    notes.append(f"FAIL ours < WTLFU-{WTLFU_TOLERANCE}")
                if alpha == 1.0 and fraction == 0.01 and d_lru < LRU_MARGIN:
                    notes.append(f"FAIL ours < LRU+{LRU_MARGIN}")
                ok = ok and not notes
                cells = [row[c] for c in cols[:-2]] + [d_wtlfu, d_lru]
                label = f"{fraction:.0%} ({size:,})"
                print(
                    f"{alpha:>5} {label:>13} "
                    + " ".join(f"{v:>+14.4f}" if i >= len(cols) - 2 else f"{v:>14.4f}" for i, v in enumerate(cells))
                    + "  "
                    + ("; ".join(notes) or "ok")
                )
    verdict = "PASS" if ok else "FAIL"
    print(
        f"VERDICT hit ratio: {verdict} (targets: ours >= lcs WTinyLFU - {WTLFU_TOLERANCE} in every cell; "
        f"ours >= LRU + {LRU_MARGIN} at alpha 1.0 / 1%; harness: lcs LRU == cachetools LRU, Belady max)"
    )
    return ok


def speed_section(n_keys: int, repeats: int) -> bool:
    print(f"\n== Raw get on hits: {n_keys:,} string keys, median of {repeats} timeit repeats, ns/op")
    keys = [f"agent:{i}:tool-result" for i in range(n_keys)]
    plain = {k: k for k in keys}
    lru: cachetools.LRUCache[str, str] = cachetools.LRUCache(n_keys)
    ours = S3FIFO(n_keys)
    th = theine.Cache(n_keys * 2)
    for k in keys:
        lru[k] = k
        ours.set(k, k)
        th.set(k, k)
    assert all(k in lru and k in ours and th.get(k)[1] for k in keys), "speed setup: not all hits"
    cases = {
        "dict.get": ("for k in keys: g(k)", {"g": plain.get}),
        "cachetools LRUCache[k]": ("for k in keys: c[k]", {"c": lru}),
        "theine Cache.get": ("for k in keys: g(k)", {"g": th.get}),
        "S3FIFO.get": ("for k in keys: g(k)", {"g": ours.get}),
    }
    ns: dict[str, float] = {}
    for name, (stmt, env) in cases.items():
        times = timeit.repeat(stmt, globals={"keys": keys, **env}, number=1, repeat=repeats)
        ns[name] = statistics.median(times) / n_keys * 1e9
    print(f"{'operation':<24} {'ns/op':>8} {'x dict.get':>11}")
    for name, v in ns.items():
        print(f"{name:<24} {v:>8.1f} {v / ns['dict.get']:>11.2f}")
    ok = ns["S3FIFO.get"] <= ns["cachetools LRUCache[k]"]
    print(
        f"VERDICT speed: {'PASS' if ok else 'FAIL'} (S3FIFO.get {ns['S3FIFO.get']:.1f} ns "
        f"no slower than LRUCache[k] {ns['cachetools LRUCache[k]']:.1f} ns)"
    )
    th.close()
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--speed-keys", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args(argv)
    hits_ok = hit_ratio_section(args.requests, args.objects, args.seed)
    speed_ok = True if args.skip_speed else speed_section(args.speed_keys, args.repeats)
    print(f"\nOVERALL: {'PASS' if hits_ok and speed_ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
