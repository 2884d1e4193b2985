"""The runtime on a real Redis Cluster (6 local redis-server processes: 3 primaries, a replica each).

Each test module gets its own cluster (the topology changes here must not reach other modules' tests). Managers
built with different configurations belong to different clusters (``mw.cluster``), so they share nothing in
process: what one sees of the other's writes went through Redis and its pub/sub bus, as between processes.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from waits import until

import mw
from mw import MwConfig, MwManager
from mw import keys as K
from mw.tiers.slots import hash_slot
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.redis_cluster import RedisClusterProcesses, redis_cluster_proc

pytestmark = pytest.mark.mw_real_servers

cluster = redis_cluster_proc(scope="module")


def _until(cond: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    return until(cond, timeout_s)


@pytest.fixture
def make(cluster: RedisClusterProcesses) -> Iterator[Callable[..., MwManager]]:
    """Managers on the cluster in one test namespace; ``l1_max_items`` tells clusters apart (see the module doc)."""
    ns = f"c{uuid.uuid4().hex[:10]}"
    made: list[MwManager] = []

    def build(organ: str, cluster_no: int = 1, **changes: Any) -> MwManager:
        config = MwConfig(
            redis_url=cluster.url,
            redis_cluster=True,
            namespace=ns,
            mlt_dsn="sqlite://",
            l1_max_items=1000 + cluster_no,
            **changes,
        )
        manager = MwManager(organ, config, node=f"n{cluster_no}")
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.close()
    mw.close_all()


def _owners(cluster: RedisClusterProcesses, manager: MwManager, keys: list[str]) -> set[int]:
    return {cluster.owner(hash_slot(manager.l2.phys(k))).port for k in keys}


def test_our_slot_is_the_servers_and_an_items_keys_share_it(
    cluster: RedisClusterProcesses, make: Callable[..., MwManager]
) -> None:
    a = make("a")
    key = K.global_typed_key("doc", "s", "x{1}")
    phys = [a.l2.phys(k) for k in (key, K.negative_key(key), K.lease_key(key))]
    assert {cluster.keyslot(p) for p in phys} == {hash_slot(phys[0])}


def test_reads_writes_and_deletes_span_every_primary(
    cluster: RedisClusterProcesses, make: Callable[..., MwManager]
) -> None:
    a, b = make("a", 1), make("b", 2)
    ids = [str(i) for i in range(30)]
    for i in ids:
        a.set_global_item_typed("doc", "s", i, {"v": i})
    keys = [K.global_typed_key("doc", "s", i) for i in ids]
    assert len(_owners(cluster, a, keys)) == 3, "the test's items must live on every primary"
    assert b.get_many_typed("doc", "s", ids) == {i: {"v": i} for i in ids}
    assert b.tiers.telemetry.l2_hits == 30  # one MGET per slot, every one answered from L2
    bus = b.cluster.started_bus
    assert bus is not None
    heard = bus.received
    for i in ids[:10]:
        assert a.del_global_item_typed("doc", "s", i)
    assert _until(lambda: bus.received >= heard + 10), "b's bus heard every delete"
    found = b.get_many_typed("doc", "s", ids)
    assert sorted(found) == sorted(ids[10:])
    assert asyncio.run(b.get_many_typed_async("doc", "s", ids)) == found


def test_async_writes_and_reads_on_a_cluster(make: Callable[..., MwManager]) -> None:
    a, b = make("a", 1), make("b", 2)

    async def run() -> list[Any]:
        await a.set_global_item_typed_async("doc", "s", "1", "one")
        got = [await b.get_item_typed_async("doc", "s", "1")]
        await a.del_global_item_typed_async("doc", "s", "1")
        got.append(await a.get_item_typed_async("doc", "s", "1"))
        return got

    assert asyncio.run(run()) == ["one", None]


def test_one_load_per_key_across_clusters(make: Callable[..., MwManager]) -> None:
    """Single flight (in process) and the lease (Lua scripts on the item's slot) hold on a cluster: 8 threads in
    two clusters asking for one missing key load it once."""
    managers = [make(f"a{i}", 1 + i % 2) for i in range(8)]
    calls: list[int] = []
    gate = threading.Barrier(len(managers))

    def loader() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.2)
        return {"v": 1}

    results: list[Any] = []

    def ask(m: MwManager) -> None:
        gate.wait()
        results.append(m.get_or_load("doc", "s", "hot", loader))

    threads = [threading.Thread(target=ask, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [{"v": 1}] * 8
    assert len(calls) == 1


def test_a_slot_moving_mid_run_is_invisible_to_callers(
    cluster: RedisClusterProcesses, make: Callable[..., MwManager]
) -> None:
    a, b = make("a", 1), make("b", 2)
    a.set_global_item_typed("doc", "s", "moving", "v1")
    assert b.get_item_typed("doc", "s", "moving") == "v1"  # b's client now maps the slot to its old owner
    slot = hash_slot(a.l2.phys(K.global_typed_key("doc", "s", "moving")))
    target = next(p for p in cluster.primaries() if p.port != cluster.owner(slot).port)
    cluster.move_slot(slot, target)
    a.set_global_item_typed("doc", "s", "moving", "v2")  # MOVED, followed by a's client
    c = make("c", 3)
    assert c.get_item_typed("doc", "s", "moving") == "v2"
    assert c.tiers.telemetry.l2_hits == 1
    assert a.l2.topology_changes == b.l2.topology_changes == 0, "redis-py's cluster client follows MOVED itself"
    assert _until(lambda: b.get_item_typed("doc", "s", "moving") == "v2", 5.0)


def test_a_killed_primary_never_surfaces_to_callers_and_l2_serves_again(
    cluster: RedisClusterProcesses, make: Callable[..., MwManager]
) -> None:
    """Callers keep working while a primary dies and its replica takes over; afterwards L2 serves again, and the bus
    (if its subscription was on the dead node) resubscribes elsewhere."""
    a, b = make("a", 1, tier_retry_s=0.2), make("b", 2, tier_retry_s=0.2)
    a.set_global_item_typed("doc", "s", "0", 0)
    slot = hash_slot(a.l2.phys(K.global_typed_key("doc", "s", "0")))
    victim = cluster.owner(slot)
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                a.set_global_item_typed("doc", "s", str(n % 5), n)
                b.get_item_typed("doc", "s", str(n % 5))
                b.get_many_typed("doc", "s", [str(i) for i in range(5)])
            except BaseException as exc:  # any exception reaching a caller fails the test
                errors.append(exc)
            time.sleep(0.005)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        promoted = cluster.kill(victim)
        assert promoted is not None
    finally:
        stop.set()
        worker.join(30)
        cluster.restart(victim)
    assert errors == []
    c = make("c", 3)

    def lands() -> bool:
        # a's L2 may still be marked down from the churn's last failure: that write skips L2 (and is replayed as a
        # delete), so it is written again until L2 takes it
        a.set_global_item_typed("doc", "s", "after", "v")
        return c.get_item_typed("doc", "s", "after") == "v"

    assert _until(lands)
    assert c.tiers.telemetry.l2_hits >= 1
    bus = b.cluster.started_bus
    assert bus is not None
    assert _until(lambda: bus.subscribed)
    heard = bus.received
    a.del_global_item_typed("doc", "s", "after")
    assert _until(lambda: bus.received > heard), "the bus hears deletes after the failover"


def test_a_cluster_that_is_down_degrades_to_the_store(make: Callable[..., MwManager]) -> None:
    """No node answers: the cluster client cannot even be made; callers get the store's answer, not an exception."""
    config = MwConfig(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_cluster=True, mlt_dsn="sqlite://", redis_timeout_s=0.2
    )
    m = MwManager("lonely", config)
    try:
        m.mlt.put_item("doc", "s", "1", "from the store")
        assert m.get_item_typed("doc", "s", "1") == "from the store"
        m.set_global_item_typed("doc", "s", "2", "kept locally")
        assert asyncio.run(m.get_item_typed_async("doc", "s", "1")) == "from the store"
        assert m.tiers.telemetry.l2_errors >= 1
    finally:
        m.close()
        mw.close_all()


@pytest.mark.parametrize("cluster_rules", [True, False], ids=["cluster-acl", "standalone-acl"])
def test_the_runtime_runs_on_a_cluster_as_the_least_privilege_user(
    cluster: RedisClusterProcesses, cluster_rules: bool
) -> None:
    """The user of ``mw.acl`` with its cluster commands, set on every node (a cluster shares no ACL users): reads,
    writes, deletes, the lease and the bus work. Without ``CLUSTER_COMMANDS`` the client cannot read the slot map."""
    import redis

    from mw.acl import acl_setuser

    ns, password = f"acl{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    user = f"mw{ns}"
    for node in cluster.nodes():
        if node.pid is not None:
            with redis.Redis(host=node.host, port=node.port) as admin:
                admin.execute_command(*acl_setuser(user, password, ns, cluster=cluster_rules))
    primary = cluster.primaries()[0]
    config = MwConfig(
        redis_url=f"redis://{user}:{password}@{primary.host}:{primary.port}/0",
        redis_cluster=True,
        namespace=ns,
        mlt_dsn="sqlite://",
    )
    m = MwManager("acl", config)
    try:
        m.set_global_item_typed("doc", "s", "1", "v")
        got = (m.get_item_typed("doc", "s", "1"), m.get_or_load("doc", "s", "2", lambda: "loaded"))
        m.del_global_item_typed("doc", "s", "1")
        if not cluster_rules:
            assert m.tiers.telemetry.l2_errors > 0, "the check above can fail: no slot map without CLUSTER_COMMANDS"
            return
        assert got == ("v", "loaded") and m.tiers.telemetry.l2_errors == 0 and m.l2.permission_errors == 0
        bus = m.cluster.started_bus
        assert bus is not None and _until(lambda: bus.subscribed)
    finally:
        m.close()
        mw.close_all()


def test_the_nodes_come_from_the_runs_provider(cluster: RedisClusterProcesses, pytestconfig: pytest.Config) -> None:
    """``--mw-server-provider container`` runs every test here on a cluster of containers (CI's container step)."""
    from pytest_mw.servers.settings import stashed_server_options

    expected = "container" if stashed_server_options(pytestconfig).provider == "container" else "process"
    assert cluster.provider == cluster.spec.provider == expected
    assert cluster.label.startswith(expected) and len(cluster.pids) == 6


def test_a_whole_cluster_paused_costs_callers_nothing_and_its_deletes_are_replayed(
    cluster: RedisClusterProcesses, make: Callable[..., MwManager]
) -> None:
    """Every node SIGSTOPped: redis-py's cluster client raises RedisClusterException ("cannot be connected", not a
    RedisError) from inside the command. That is an outage like any other: callers get no exception, and the delete
    made meanwhile is kept and replayed once the nodes answer (it was dropped as "unsendable" before)."""
    import os
    import signal

    a = make("a", 1, tier_retry_s=0.2, redis_timeout_s=0.3)
    a.set_global_item_typed("doc", "s", "1", "old")
    pids = list(cluster.pids)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert a.del_global_item_typed("doc", "s", "1") is not None  # no exception: answered from what is known
        a.get_item_typed("doc", "s", "2")
        assert a.cluster.pending, "the delete waits for L2"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert _until(lambda: not a.cluster.pending), "replayed once the nodes answered"
    assert make("b", 2).get_item_typed("doc", "s", "1") is None


def test_scan_keys_on_a_cluster_finds_markers_and_leases_too(make: Callable[..., MwManager]) -> None:
    a = make("a")
    a.set_negative_cache("doc", "s", "gone")
    a.set_global_item_typed("doc", "s", "here", 1)
    marker, value = K.negative_key(K.global_typed_key("doc", "s", "gone")), K.global_typed_key("doc", "s", "here")
    assert marker in a.l2.scan_keys(K.NEGATIVE_PREFIX + "*")
    assert value in a.l2.scan_keys("global:item:doc:*") and marker not in a.l2.scan_keys("global:item:doc:*")
