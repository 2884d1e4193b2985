"""A herd member process: N threads call ``get_or_load`` on one key at the same wall-clock instant.

Run as ``python herd_worker.py JSON_CONFIG``; prints one JSON line: the values each caller got and its
latency. The loader sleeps, then records its call as a row in Mlt, so the parent counts loader calls
across every process in the database itself.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

from mw import MwConfig, MwManager


def main() -> None:
    spec = json.loads(sys.argv[1])
    config = MwConfig.from_env({}, mlt_dsn=spec["mlt_dsn"], namespace=spec["namespace"], **spec["l2"])
    manager = MwManager(f"herd-{spec['proc']}", config)
    manager.cluster.mlt.get_item("warm", "up", "x")  # open pools before the start instant

    def loader() -> dict[str, object]:
        time.sleep(spec["load_s"])
        manager.cluster.mlt.put_item("herd", "calls", uuid.uuid4().hex, spec["proc"])
        return {"report": "fresh", "by": spec["proc"]}

    results: list[tuple[object, float]] = []
    lock = threading.Lock()

    def caller() -> None:
        delay = spec["start_at"] - time.time()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        value = manager.get_or_load("report", "herd", "k", loader=loader, ttl_s=60)
        with lock:
            results.append((value, time.perf_counter() - t0))

    threads = [threading.Thread(target=caller) for _ in range(spec["callers"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "values": [v for v, _ in results],
                "latencies": [lat for _, lat in results],
                "lease_waits": manager.telemetry.lease_waits,
                "woken": manager.cluster.bus.waiters.woken if manager.cluster.bus is not None else 0,
            }
        )
    )
    manager.close()


if __name__ == "__main__":
    main()
