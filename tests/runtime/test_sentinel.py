"""The runtime on a real Sentinel group (a primary, a replica and 3 sentinels: local redis-server processes).

Replication is asynchronous: a primary that dies can take with it deletes it had acknowledged. With
``MW_REDIS_WAIT_REPLICAS`` (1 by default with Sentinel) every invalidating change waits for a replica, and one no
replica confirmed is replayed, so it reaches the new primary. The lost-delete test makes the loss certain (the
replica is paused and cut off before the deletes, then promoted) and shows it both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from waits import until

import mw
from mw import MwConfig, MwManager
from pytest_mw.servers.redis_sentinel import DataNode, RedisSentinelGroup, redis_sentinel_proc

pytestmark = pytest.mark.mw_real_servers

sentinel = redis_sentinel_proc(scope="module")


def _until(cond: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    return until(cond, timeout_s, ignore=(redis.RedisError,))


@pytest.fixture
def make(sentinel: RedisSentinelGroup) -> Iterator[Callable[..., MwManager]]:
    """Managers on the group in one namespace; ``cluster_no`` makes separate clusters (they share only Redis)."""
    ns = f"s{uuid.uuid4().hex[:10]}"
    made: list[MwManager] = []

    def build(organ: str, cluster_no: int = 1, **changes: Any) -> MwManager:
        config = MwConfig(
            redis_sentinels=sentinel.sentinel_hosts,
            redis_sentinel_master=sentinel.master_name,
            namespace=ns,
            mlt_dsn="sqlite://",
            l1_max_items=1000 + cluster_no,
            tier_retry_s=0.2,
            **changes,
        )
        manager = MwManager(organ, config, node=f"n{cluster_no}")
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.close()
    mw.close_all()


def _admin(node: DataNode) -> redis.Redis:
    return redis.Redis(host=node.host, port=node.port, socket_timeout=5)


def test_reads_writes_deletes_and_the_bus_through_the_sentinels(make: Callable[..., MwManager]) -> None:
    a, b = make("a", 1), make("b", 2)
    a.set_global_item_typed("doc", "s", "1", "one")
    assert b.get_item_typed("doc", "s", "1") == "one"
    assert b.tiers.telemetry.l2_hits == 1
    bus = b.cluster.started_bus
    assert bus is not None
    heard = bus.received
    assert a.del_global_item_typed("doc", "s", "1")
    assert _until(lambda: bus.received > heard)
    assert b.get_item_typed("doc", "s", "1") is None
    assert asyncio.run(b.get_item_typed_async("doc", "s", "1")) is None
    assert a.l2.wait_replicas == 1, "with Sentinel, changes wait for a replica by default"


def _lose_replication(sentinel: RedisSentinelGroup) -> tuple[DataNode, DataNode]:
    """Pause the replica and cut its link: from now on the primary acknowledges what no replica will have."""
    primary = sentinel.primary()
    replica = next(n for n in sentinel.nodes() if n.role == "replica")
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGSTOP)
    with _admin(primary) as admin:
        admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
    return primary, replica


def _promote_the_stale_replica(sentinel: RedisSentinelGroup, primary: DataNode, replica: DataNode) -> None:
    """Kill the primary, wake the replica (which never got the changes since the cut) and wait for its promotion."""
    assert primary.pid is not None and replica.pid is not None
    os.kill(primary.pid, signal.SIGKILL)
    os.kill(replica.pid, signal.SIGCONT)
    assert _until(lambda: sentinel.primary_address() == replica.address, 60.0), "the sentinels promoted the replica"
    assert _until(lambda: _admin(replica).execute_command("ROLE")[0] == b"master", 30.0)


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["wait", "no-wait"])
def test_deletes_acknowledged_before_a_failover_are_not_lost(
    sentinel: RedisSentinelGroup, make: Callable[..., MwManager], wait_replicas: int
) -> None:
    """The primary acknowledges deletes its replica never gets, then dies and the replica takes over. With WAIT the
    deletes were unconfirmed and are replayed to the new primary: a fresh reader finds none of the deleted items.
    Without it (``MW_REDIS_WAIT_REPLICAS=0``) the new primary still holds them: every one is served stale."""
    a = make("a", 1, redis_wait_replicas=wait_replicas)
    ids = [str(i) for i in range(10)]
    for i in ids:
        a.set_global_item_typed("doc", "s", i, f"old {i}")
    with _admin(sentinel.primary()) as admin:
        # WAIT counts what replicas have of this connection's writes: one write of its own after a's, then WAIT,
        # proves the replica has a's too (one replication stream).
        admin.set(f"{a.config.namespace}:probe", b"1")
        assert int(admin.execute_command("WAIT", 1, 30_000)) == 1, "the replica has the old values"
    primary, replica = _lose_replication(sentinel)
    try:
        for i in ids:
            a.del_global_item_typed("doc", "s", i)  # acknowledged to the caller (no exception)
        assert a.l2.unconfirmed >= len(ids) if wait_replicas else a.l2.unconfirmed == 0  # replays count too
        _promote_the_stale_replica(sentinel, primary, replica)
        keys = [a.l2.phys(mw.keys.global_typed_key("doc", "s", i)) for i in ids]
        with _admin(replica) as admin:
            if wait_replicas:  # replayed by a's bus tick (and again until a replica confirms: none is up yet)
                assert _until(lambda: admin.exists(*keys) == 0), "a replayed the unconfirmed deletes"
            held = admin.exists(*keys)
        fresh = make("fresh", 2)
        served = {i: fresh.get_item_typed("doc", "s", i) for i in ids}
        stale = {i: v for i, v in served.items() if v is not None}
        if wait_replicas:
            assert stale == {} and held == 0, f"deleted items served after the failover: {stale}"
        else:
            assert held == len(ids), "the check above can fail: without WAIT the new primary lost the deletes"
            assert stale == {i: f"old {i}" for i in ids}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(replica.pid or 0), signal.SIGCONT)
        if any(n.port == primary.port and n.role == "down" for n in sentinel.nodes()):
            sentinel.restart(primary)  # back as the new primary's replica, for the next test


BOUND_S = 1.0
"""Slack on top of the documented bounds (below) for a busy machine's scheduling."""


def _stale_reads(records: list[dict[str, Any]], back_at: float, l1_ttl_s: float) -> list[dict[str, Any]]:
    """Reads that returned a version older than a change acknowledged longer ago than the bound.

    The bound of a change is ``MW_L1_TTL_S`` (what a process whose bus is down may keep serving) plus slack, counted
    from its acknowledgement, or, for a change L2 did not take or confirm (replayed), from when L2 answered again.
    """
    changes: dict[int, list[tuple[int, float]]] = {}
    for r in records:
        if r.get("op") in ("write", "delete") and "error" not in r:
            since = max(r["t1"], back_at) if r["l2_error"] else r["t1"]
            changes.setdefault(r["key"], []).append((r["v"], since + l1_ttl_s + BOUND_S))
    return [
        r
        for r in records
        if r.get("op") == "read" and r["v"] is not None
        and any(v > r["v"] and due < r["t0"] for v, due in changes.get(r["key"], []))
    ]  # fmt: skip


@pytest.mark.parametrize("bus", ["pubsub", "nopubsub"])
def test_killing_the_primary_under_four_processes_loses_nothing(
    sentinel: RedisSentinelGroup, tmp_path: Any, capsys: pytest.CaptureFixture[str], bus: str
) -> None:
    """4 processes read, write and delete while the primary is SIGKILLed (and restarted as a replica soon after):
    no caller error, no stale read beyond the bound, and no acknowledged delete lost (the new primary holds none of
    the keys whose last change was a delete). Prints the figures docs/runtime.md quotes: the time without L2 and how
    reads were served meanwhile. ``nopubsub`` (no invalidation bus) shows the stale-read check failing."""
    import subprocess
    import sys
    from pathlib import Path

    import sentinel_churn as churn

    ns = f"s{uuid.uuid4().hex[:10]}"
    seconds = 14.0
    script = Path(churn.__file__)
    outs = [tmp_path / f"w{w}.jsonl" for w in range(churn.WORKERS)]
    group = [sentinel.sentinel_hosts, sentinel.master_name, ns]
    extra = [bus] if bus == "nopubsub" else []
    procs = [
        subprocess.Popen([sys.executable, str(script), *group, str(w), str(seconds), str(o), *extra])
        for w, o in enumerate(outs)
    ]
    old = sentinel.primary()
    try:
        assert _until(lambda: all(o.exists() and o.stat().st_size > 0 for o in outs), 30.0), "workers started"
        time.sleep(3.0)
        killed_at = time.monotonic()
        new = sentinel.kill_primary()
        back_at = time.monotonic()
        sentinel.restart(old)  # a replica again: changes get their confirmation, the unconfirmed ones' replays too
        replica_at = time.monotonic()
        for p in procs:
            assert p.wait(timeout=seconds + 60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if any(n.port == old.port and n.role == "down" for n in sentinel.nodes()):
            sentinel.restart(old)
    records = [json.loads(line) for o in outs for line in o.read_text().splitlines()]
    records = [r for r in records if r.get("op") != "ready"]
    errors = [r for r in records if "error" in r]
    assert errors == [], errors[:5]
    stale = _stale_reads(records, back_at, churn.L1_TTL_S)
    if bus == "nopubsub":
        assert stale, "the check can fail: without the bus, other processes' old copies are served past the bound"
        return
    assert stale == [], stale[:5]
    last: dict[int, dict[str, Any]] = {}
    for r in sorted((r for r in records if r["op"] in ("write", "delete")), key=lambda r: r["v"]):
        last[r["key"]] = r
    deleted = [k for k, r in last.items() if r["op"] == "delete"]
    phys = MwConfig(namespace=ns).namespace + ":" + "global:item:doc:s:k{}"
    with _admin(new) as admin:
        assert _until(lambda: admin.exists(*[phys.format(k) for k in deleted]) == 0 if deleted else True, 20.0), (
            "an acknowledged delete was lost in the failover"
        )
    outage = [r for r in records if r["l2_error"] and not r["unconfirmed"]]
    without = max(r["t1"] for r in outage) - min(r["t0"] for r in outage) if outage else 0.0
    unconfirmed = [r for r in records if r["unconfirmed"]]
    window = [r for r in records if r["op"] == "read" and killed_at <= r["t0"] <= back_at]
    served = {tier: sum(1 for r in window if r["tier"] == tier) for tier in ("l0", "l1", "l2", "miss")}
    with capsys.disabled():
        print(
            f"\nsentinel failover: switch took {back_at - killed_at:.2f} s, the old primary was a synced replica "
            f"{replica_at - back_at:.2f} s later; L2 unreachable over {without:.2f} s; {len(unconfirmed)} changes "
            f"unconfirmed (replayed); {len(records)} calls, {len(window)} reads during the switch served {served}; "
            f"{len(deleted)} keys last deleted, none back"
        )
