"""Invalidation reaches other processes; a gap or a dropped subscription flushes, never serves stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

from mw import MwConfig, MwManager
from mw import keys as K
from mw.invalidation import INV_CHANNEL

Make = Callable[..., MwManager]


def _wait(cond: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_invalidation_reaches_another_cluster_sharing_l2(make_manager: Make) -> None:
    """In one process, another cluster stands for another process: it shares only L2 and the bus."""
    a = make_manager("a")
    other = make_manager("b", l1_max_items=4321)
    assert other.cluster is not a.cluster
    a.mlt.put_task({"id": "inv-1", "status": "running"})
    other.mlt.put_task({"id": "inv-1", "status": "running"})
    assert other.get_task("inv-1")["status"] == "running"
    assert K.task_key("inv-1") in other.l0 and other.l1.get(K.task_key("inv-1")) is not None
    a.invalidate_task("inv-1")
    assert _wait(lambda: K.task_key("inv-1") not in other.l0 and other.l1.get(K.task_key("inv-1")) is None)
    assert other.cluster.bus is not None and other.cluster.bus.lag.summary()["count"] >= 1
    a.set_global_item_typed("doc", "s", "1", "v1")
    assert other.get_item_typed("doc", "s", "1") == "v1"
    a.set_global_item_typed("doc", "s", "1", "v2")
    assert _wait(lambda: other.get_item_typed("doc", "s", "1") == "v2"), "a write replaces remote copies"


def test_a_sequence_gap_flushes_local_tiers(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("doc", "s", "1", "v")
    assert a.get_item_typed("doc", "s", "1") == "v" and len(a.l0) == 1
    bus = a.cluster.bus
    assert bus is not None
    flushes = bus.flushes
    for seq in (1, 2, 5):  # 3 and 4 never arrive
        body = {"o": "someone-else", "s": seq, "k": ["global:item:doc:s:unrelated"], "t": time.time()}
        a.l2.publish(INV_CHANNEL, json.dumps(body).encode())
    assert _wait(lambda: bus.flushes == flushes + 1)
    assert len(a.l0) == 0 and len(a.l1) == 0
    assert a.get_item_typed("doc", "s", "1") == "v", "a flush costs hits, the value is still in L2"


def test_a_malformed_message_flushes(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("doc", "s", "1", "v")
    bus = a.cluster.bus
    assert bus is not None
    a.l2.publish(INV_CHANNEL, b"garbage")
    assert _wait(lambda: bus.flushes >= 1 and len(a.l0) == 0)


def test_a_dropped_subscription_flushes_and_resubscribes(make_manager: Make, backend: str, l2_admin: Any) -> None:
    a = make_manager("a")
    a.set_global_item_typed("doc", "s", "1", "v")
    bus = a.cluster.bus
    assert bus is not None and bus.subscribed
    if backend == "real" and a.l2.slotted:  # the subscriber's node is one primary: kill on every node
        l2_admin.client_kill_filter(_type="pubsub", target_nodes=l2_admin.ALL_NODES)
    elif backend == "real":
        l2_admin.client_kill_filter(_type="pubsub")
    else:
        bus._pubsub.connection.disconnect()
    assert _wait(lambda: bus.reconnects >= 1 or bus.flushes >= 1)
    assert len(a.l0) == 0
    b = make_manager("b", l1_max_items=777)
    b.set_global_item_typed("doc", "s", "1", "v2")
    assert _wait(lambda: a.get_item_typed("doc", "s", "1") == "v2"), "subscribed again after the drop"


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from mw import MwConfig, MwManager
    from mw import keys as K
    spec = json.loads(sys.argv[1])
    m = MwManager("child", MwConfig(mlt_dsn=spec["dsn"], namespace=spec["ns"], **spec["l2"]))
    row = m.get_task("x-1")
    key = K.task_key("x-1")
    print(json.dumps({"ready": row["status"]}), flush=True)
    deadline = time.monotonic() + 10
    while key in m.l0 and time.monotonic() < deadline:
        time.sleep(0.001)
    print(json.dumps({"dropped": key not in m.l0 and m.l1.get(key) is None, "lag": m.cluster.bus.lag.summary(),
                      "status": m.get_task("x-1")["status"]}), flush=True)
    """
)


def test_invalidation_reaches_an_agent_in_another_process(
    real_l2_settings: dict[str, Any], mw_namespace: str, mw_postgres_dsn: str
) -> None:
    config = MwConfig(mlt_dsn=str(mw_postgres_dsn), namespace=mw_namespace, **real_l2_settings)
    parent = MwManager("parent", config)
    try:
        parent.mlt.put_task({"id": "x-1", "status": "running"})
        spec = {"l2": real_l2_settings, "dsn": config.mlt_dsn, "ns": config.namespace}
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(spec)], stdout=subprocess.PIPE, text=True, env={**os.environ}
        ) as child:
            assert child.stdout is not None
            assert json.loads(child.stdout.readline()) == {"ready": "running"}
            parent.update_task_status("x-1", "completed")
            report = json.loads(child.stdout.readline())
            child.wait(timeout=20)
        assert report["dropped"] is True and report["status"] == "completed"
        assert report["lag"]["count"] >= 1 and report["lag"]["max_ms"] < 1000
    finally:
        parent.close()


def test_concurrent_writers_do_not_cause_flush_storms(make_manager: Make) -> None:
    import threading

    a = make_manager("a")
    other = make_manager("b", l1_max_items=4242)
    bus = other.cluster.bus
    assert bus is not None

    def writer(n: int) -> None:
        for i in range(150):
            a.set_global_item_typed("doc", "w", f"{n}-{i}", i)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _wait(lambda: bus.received >= 600)
    time.sleep(0.7)  # longer than the gap grace
    assert bus.flushes == 0, "reordered messages of one origin are not losses"


def _message(origin: str, seq: int, key: str = "global:item:doc:s:unrelated") -> bytes:
    return json.dumps({"o": origin, "s": seq, "k": [key], "t": time.time()}).encode()


def test_sequence_state_of_100k_one_shot_origins_stays_bounded() -> None:
    """The bus is driven directly (no thread): the state is the bus thread's alone."""
    from mw.invalidation import InvalidationBus
    from mw.tiers.l2 import RedisTier

    flushes: list[int] = []
    l2 = RedisTier(None)
    bus = InvalidationBus(l2, drop=lambda keys: None, flush=lambda: flushes.append(1))
    l2.close()  # never used: this bus only receives what the test hands it
    bus._on_invalidation(_message("evicted-later", 1))
    for n in range(100_000):
        bus._on_invalidation(_message(f"one-shot-{n}", 1))
        if n % 1000 == 0:
            bus._check_gaps()
    assert len(bus._origins) <= 10_000, "sequence state is pruned"
    assert not flushes, "forgetting origins whose sequence had no hole flushes nothing"
    bus._on_invalidation(_message("evicted-later", 5))  # its state was forgotten: a fresh start, not a gap
    for seq in (1, 2, 5):  # a live origin: 3 and 4 never arrive
        bus._on_invalidation(_message("live", seq))
    time.sleep(0.6)  # longer than the gap grace
    bus._check_gaps()
    assert len(flushes) == 1, "the live origin's gap flushes, once"


def test_pruned_origins_over_the_bus_do_not_flush_and_a_real_gap_still_does(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_global_item_typed("doc", "s", "1", "v")
    bus = a.cluster.bus
    assert bus is not None
    bus.max_origins = 50
    received, flushes = bus.received, bus.flushes
    # one pipeline; a cluster client pipelines no PUBLISH (classic pub/sub is broadcast, not routed): one by one
    pipe = a.l2.client if a.l2.slotted else a.l2.client.pipeline(transaction=False)
    for n in range(300):
        pipe.publish(a.l2.channel(INV_CHANNEL), _message(f"one-shot-{n}", 1))
    if not a.l2.slotted:
        pipe.execute()
    assert _wait(lambda: bus.received >= received + 300)
    assert len(bus._origins) <= 50
    for seq in (1, 2, 5):
        a.l2.publish(INV_CHANNEL, _message("live", seq))
    assert _wait(lambda: bus.flushes == flushes + 1)
    time.sleep(0.7)
    assert bus.flushes == flushes + 1, "only the real gap flushed"
    assert len(a.l0) == 0 and a.get_item_typed("doc", "s", "1") == "v"
