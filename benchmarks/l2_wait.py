"""What waiting for a replica costs: invalidating writes and deletes on a Sentinel group with and without ``WAIT``.

``python benchmarks/l2_wait.py [--ops N] [--rounds R]`` starts a throwaway Sentinel group (a primary, a replica, 3
sentinels: local redis-server processes), then times ``set_global_item_typed`` + ``del_global_item_typed`` pairs with
``MW_REDIS_WAIT_REPLICAS=0`` (acknowledged by the primary alone) and ``=1`` (the default with Sentinel: the change
waits for the replica), ``R`` samples of each in ABBA order, and prints the median microseconds per call of each and
their ratio. Reads are not affected (only changes that invalidate wait), so that ratio is the cost on the write path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _per_call_us(sentinels: str, master: str, wait: int, ops: int) -> float:
    import mw
    from mw import MwConfig, MwManager

    config = MwConfig(
        redis_sentinels=sentinels,
        redis_sentinel_master=master,
        namespace=f"bench{uuid.uuid4().hex[:8]}",
        mlt_dsn="sqlite://",
        redis_wait_replicas=wait,
    )
    m = MwManager("bench", config)
    try:
        m.set_global_item_typed("doc", "s", "warm", 0)
        start = time.perf_counter()
        for i in range(ops):
            m.set_global_item_typed("doc", "s", str(i), i)
            m.del_global_item_typed("doc", "s", str(i))
        elapsed = time.perf_counter() - start
        if m.l2.unconfirmed:
            print(f"  ({m.l2.unconfirmed} changes were unconfirmed: the replica lagged past the timeout)")
        return elapsed / (2 * ops) * 1e6
    finally:
        m.close()
        mw.close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="set+delete pairs per sample")
    parser.add_argument("--rounds", type=int, default=5, help="samples of each, alternating")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pytest_mw.servers.redis_sentinel import RedisSentinelGroup

    group = RedisSentinelGroup()
    group.start()
    try:
        samples: dict[int, list[float]] = {0: [], 1: []}
        for r in range(args.rounds):
            for wait in (0, 1) if r % 2 == 0 else (1, 0):  # ABBA: neither always runs first
                samples[wait].append(_per_call_us(group.sentinel_hosts, group.master_name, wait, args.ops))
        off, on = statistics.median(samples[0]), statistics.median(samples[1])
        print(f"no WAIT:          {off:8.1f} us per invalidating call (median of {args.rounds})")
        print(f"WAIT 1 replica:   {on:8.1f} us per invalidating call")
        print(f"ratio WAIT / none: {on / off:.2f}")
    finally:
        group.stop()


if __name__ == "__main__":
    main()
