"""A thundering herd on one missing key, against this runtime and against dogpile.cache, in one run.

N worker processes (each with T caller threads) ask for the same missing key at the same instant; the
creator sleeps ``--load-ms`` and counts its runs in Redis. Contenders:

* ``mw``: ``MwManager.get_or_load`` (single flight + Redis lease, waiters woken by pub/sub);
* ``dogpile+lock``: dogpile.cache's Redis backend with ``distributed_lock=True``;
* ``dogpile``: the same without the distributed lock.

Printed per contender: creator runs, p50 and max caller latency, Redis commands the herd issued (from
``INFO stats``), and max latency as a multiple of the creator time. Target (issue 3): 1 creator run and
max latency at most 1.2x the creator time.

    python benchmarks/stampede.py [--procs 8] [--threads 1] [--load-ms 200] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from _redis import redis_url_or_throwaway

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _worker(spec: dict[str, Any]) -> None:
    """One herd member: prepare, say ready, wait for the start instant, call, report latencies."""
    import redis

    counter = redis.Redis.from_url(spec["url"])
    load_s = spec["load_ms"] / 1000

    def creator() -> dict[str, str]:
        time.sleep(load_s)
        counter.incr(spec["counter"])
        return {"report": "fresh"}

    if spec["kind"] == "mw":
        from mw import MwConfig, MwManager

        manager = MwManager("herd", MwConfig(redis_url=spec["url"], namespace=spec["ns"], lease_ttl_s=5))
        manager.l2.get("warm-up")

        def call() -> object:
            return manager.get_or_load("report", "herd", "k", loader=creator, ttl_s=60)
    else:
        from dogpile.cache import make_region

        host, port = spec["url"].split("//", 1)[1].split("/", 1)[0].split(":")
        region = make_region().configure(
            "dogpile.cache.redis",
            expiration_time=60,
            arguments={
                "host": host,
                "port": int(port),
                "distributed_lock": spec["kind"] == "dogpile+lock",
                "thread_local_lock": False,
                "lock_timeout": 5,
                "redis_expiration_time": 120,
            },
        )
        region.backend.reader_client.ping()

        def call() -> object:
            return region.get_or_create(f"{spec['ns']}:k", creator)

    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    latencies: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        t0 = time.perf_counter()
        value = call()
        elapsed = time.perf_counter() - t0
        assert value == {"report": "fresh"}, value
        with lock:
            latencies.append(elapsed)

    threads = [threading.Thread(target=run) for _ in range(spec["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(latencies), flush=True)
    os._exit(0)  # skip interpreter teardown: background threads of the contenders are not ours to wait for


def herd(kind: str, url: str, procs: int, threads: int, load_ms: int) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    spec = {
        "kind": kind,
        "url": url,
        "ns": f"herd{uuid.uuid4().hex[:8]}",
        "counter": f"herdcount:{uuid.uuid4().hex}",
        "threads": threads,
        "load_ms": load_ms,
    }
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(procs)
    ]
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    before = int(client.info("stats")["total_commands_processed"])
    start_at = time.time() + 0.3
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(f"{start_at}\n")
        w.stdin.flush()
    latencies: list[float] = []
    for w in workers:
        out, _ = w.communicate(timeout=60)
        latencies.extend(json.loads(out.strip().splitlines()[-1]))
    after = int(client.info("stats")["total_commands_processed"])
    runs = int(client.get(spec["counter"]) or 0)
    client.delete(spec["counter"])
    for key in client.scan_iter(match=f"*{spec['ns']}*"):
        client.delete(key)
    return {
        "kind": kind,
        "runs": runs,
        "p50_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
        "commands": after - before - 1,
        "callers": len(latencies),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--load-ms", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="herds per contender; the table shows the median herd")
    ap.add_argument("--redis-url", default=None, help="an existing Redis; default: a throwaway redis-server")
    args = ap.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return 0

    rows = []
    with redis_url_or_throwaway(args.redis_url) as url:
        for kind in ("mw", "dogpile+lock", "dogpile"):
            runs = [herd(kind, url, args.procs, args.threads, args.load_ms) for _ in range(args.repeat)]
            runs.sort(key=lambda r: r["max_ms"])
            rows.append(runs[len(runs) // 2])
    print(f"Herd: {args.procs} processes x {args.threads} callers, creator {args.load_ms} ms, median of {args.repeat}")
    print(f"{'contender':14} {'creator runs':>12} {'p50 ms':>8} {'max ms':>8} {'max/creator':>12} {'redis cmds':>11}")
    for r in rows:
        print(
            f"{r['kind']:14} {r['runs']:12d} {r['p50_ms']:8.1f} {r['max_ms']:8.1f} "
            f"{r['max_ms'] / args.load_ms:12.2f} {r['commands']:11d}"
        )
    ours, dog = rows[0], rows[1]
    print(f"\nmw max latency vs dogpile+lock: {dog['max_ms'] / ours['max_ms']:.2f}x lower")
    ok = ours["runs"] == 1 and ours["max_ms"] <= 1.2 * args.load_ms
    print(
        f"{'PASS' if ok else 'FAIL'}: mw 1 creator run ({ours['runs']}) and max latency <= 1.2x creator "
        f"({ours['max_ms'] / args.load_ms:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
