"""How long an invalidation takes to reach another process's local tiers, on a real local Redis.

A child process caches N keys in its L0/L1; this process invalidates them one at a time. The child
measures, per key, send-to-drop lag as its subscriber applies the message (``bus.lag``), and also
the wall time until the key is gone from its L0 as a reader would see it. Prints p50/p99/max.

    python benchmarks/invalidation_lag.py [--keys 500] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

from _redis import redis_url_or_throwaway

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from mw import MwConfig, MwManager
    spec = json.loads(sys.argv[1])
    m = MwManager("reader", MwConfig(redis_url=spec["url"], namespace=spec["ns"]))
    keys = [f"k{i}" for i in range(spec["keys"])]
    for k in keys:
        assert m.get_item_typed("doc", "lag", k) == k
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while len(m.l0) and time.monotonic() < deadline:
        time.sleep(0.001)
    print(json.dumps({"left": len(m.l0), "lag": m.cluster.bus.lag.summary(), "flushes": m.cluster.bus.flushes}))
    """
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=500)
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from mw import MwConfig, MwManager, close_all

    with redis_url_or_throwaway(args.redis_url) as url:
        ns = f"lag{uuid.uuid4().hex[:8]}"
        writer = MwManager("writer", MwConfig(redis_url=url, namespace=ns))
        for i in range(args.keys):
            writer.set_global_item_typed("doc", "lag", f"k{i}", f"k{i}")
        spec = {"url": url, "ns": ns, "keys": args.keys}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        for i in range(args.keys):
            writer.del_global_item_typed("doc", "lag", f"k{i}")
        sent_s = time.perf_counter() - t0
        report = json.loads(child.stdout.readline())
        child.wait(timeout=30)
        writer.close()
        close_all()
    lag = report["lag"]
    print(f"{args.keys} invalidations sent in {sent_s * 1000:.0f} ms ({sent_s / args.keys * 1e6:.0f} us each)")
    print(f"applied in the other process: {lag['count']}, left stale: {report['left']}, flushes: {report['flushes']}")
    print(f"lag p50 {lag['p50_ms']:.2f} ms, p99 {lag['p99_ms']:.2f} ms, max {lag['max_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
