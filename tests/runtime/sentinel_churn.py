"""One worker process of the Sentinel failover test: reads, writes and deletes on a shared key set, logging each call.

``python sentinel_churn.py SENTINELS MASTER NAMESPACE WORKER SECONDS OUT [nopubsub]``: worker ``w`` writes and
deletes the keys ``k{i}`` with ``i % 4 == w`` (versions rising per key, a delete spends one too) and reads every
key. Each call is a JSON line in ``OUT``: what it did, the version it saw, its monotonic start and end (one clock
for every process of the machine), the tier that served a read, whether L2 failed it (unreachable, or a change no
replica confirmed), and any exception that reached the caller. ``nopubsub`` runs without the invalidation bus (the
stale-read check's fault).
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from mw import MwConfig, MwManager

KEYS = 20
WORKERS = 4
L1_TTL_S = 2.0


def _tier(before: dict[str, int], after: dict[str, int]) -> str:
    for name in ("l0_hits", "l1_hits", "l2_hits"):
        if after[name] > before[name]:
            return name[:2]
    return "miss"


def _counts(m: MwManager) -> dict[str, int]:
    t = m.tiers.telemetry
    return {
        "l0_hits": t.l0_hits,
        "l1_hits": t.l1_hits,
        "l2_hits": t.l2_hits,
        "l2_errors": t.l2_errors,
        "unconfirmed": m.l2.unconfirmed,
    }


def main(sentinels: str, master: str, namespace: str, worker: int, seconds: float, out: str, pubsub: bool) -> None:
    config = MwConfig(
        redis_sentinels=sentinels,
        redis_sentinel_master=master,
        namespace=namespace,
        mlt_dsn="sqlite://",
        l1_ttl_s=L1_TTL_S,
        tier_retry_s=0.2,
        pubsub=pubsub,
    )
    m = MwManager(f"w{worker}", config, node=f"node{worker}")
    rng = random.Random(worker)
    versions = {i: 0 for i in range(KEYS) if i % WORKERS == worker}
    deadline = time.monotonic() + seconds
    with open(out, "w", encoding="utf-8") as log:
        log.write(json.dumps({"op": "ready", "t0": time.monotonic()}) + "\n")
        log.flush()
        while time.monotonic() < deadline:
            i = rng.randrange(KEYS)
            record: dict[str, Any] = {"key": i}
            before = _counts(m)
            t0 = time.monotonic()
            try:
                if i in versions and rng.random() < 0.5:
                    versions[i] += 1
                    if rng.random() < 0.6:
                        record.update(op="write", v=versions[i])
                        m.set_global_item_typed("doc", "s", f"k{i}", {"v": versions[i]})
                    else:
                        record.update(op="delete", v=versions[i])
                        m.del_global_item_typed("doc", "s", f"k{i}")
                else:
                    got = m.get_item_typed("doc", "s", f"k{i}")
                    record.update(op="read", v=None if got is None else got["v"])
            except Exception as exc:  # every exception is a caller error the test counts
                record["error"] = f"{type(exc).__name__}: {exc}"
            after = _counts(m)
            record.update(
                t0=t0,
                t1=time.monotonic(),
                l2_error=after["l2_errors"] > before["l2_errors"],
                unconfirmed=after["unconfirmed"] > before["unconfirmed"],
            )
            if record.get("op") == "read":
                record["tier"] = _tier(before, after)
            log.write(json.dumps(record) + "\n")
            time.sleep(0.002)
    m.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], args[2], int(args[3]), float(args[4]), args[5], pubsub=args[6:] != ["nopubsub"])
