"""The checklist's integration tests, on a real local Ray cluster with real Redis (and PostgreSQL as Mlt).

Several agent actors (``mw.ray.MwAgent``) run on one Ray node and share its node-cache actor as their L1;
Redis is their L2 and their invalidation bus. Ray starts once per session (2 CPUs, no dashboard, a small
object store). Everything the tests observe comes from the actors themselves (heartbeats, status, the
node actor's own counters) or from Redis, never from mocks.

Cross-process invalidation is asynchronous (pub/sub): where a test needs an agent to have *applied* an
invalidation before it reads, it waits for that agent's bus to count the message, as an operator would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'pytest-mw[ray]'")

from mw import MwConfig  # noqa: E402
from mw.errors import KeyGrammarError  # noqa: E402
from mw.keys import DOUBLE_PREFIX, task_key  # noqa: E402
from mw.mlt import open_store  # noqa: E402
from mw.ray import RAY_NAMESPACE, AsyncMwAgent, MwAgent, agent_options, env_vars, kill_node_caches  # noqa: E402
from mw.ray.node_cache import node_caches  # noqa: E402
from mw.telemetry import METRIC_FIELDS  # noqa: E402

RemoteAgent = ray.remote(MwAgent)
RemoteAsyncAgent = ray.remote(AsyncMwAgent)


def wait_until(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


class Deployment:
    """One Mw deployment on the test's Redis namespace: agent actors and what the driver sees of them."""

    def __init__(self, redis_url: str, namespace: str, mlt_dsn: str | None) -> None:
        self.redis_url = str(redis_url)
        self.namespace = namespace
        self.config = MwConfig.from_env(
            {}, redis_url=self.redis_url, mlt_dsn=None if mlt_dsn is None else str(mlt_dsn), namespace=namespace
        )
        self.agents: list[Any] = []
        self.clients: list[redis.Redis] = []

    def env(self, **overrides: str) -> dict[str, str]:
        return env_vars(self.config, **overrides)

    def spawn(self, *names: str, asyncio: bool = False, **env: str) -> list[Any]:
        """Start agent actors with this deployment's ``MW_*`` environment (plus ``env``); wait until up."""
        cls = RemoteAsyncAgent if asyncio else RemoteAgent
        made = [cls.options(**agent_options(self.env(**env))).remote(name) for name in names]
        ray.get([a.mw_status.remote() for a in made], timeout=120)
        self.agents.extend(made)
        return made

    def client(self) -> redis.Redis:
        """A client on the deployment's Redis, closed with the deployment."""
        client = redis.Redis.from_url(self.redis_url)
        self.clients.append(client)
        return client

    def phys(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def node_cache(self) -> Any:
        (name,) = node_caches(self.namespace)
        return ray.get_actor(name, namespace=RAY_NAMESPACE)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for agent in self.agents:
            ray.kill(agent)
        kill_node_caches(self.namespace)


@pytest.fixture
def deployment(ray_cluster: Any, mw_redis_url: str, mw_namespace: str) -> Iterator[Deployment]:
    d = Deployment(mw_redis_url, mw_namespace, None)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def pg_deployment(ray_cluster: Any, mw_redis_url: str, mw_namespace: str, mw_postgres_dsn: str) -> Iterator[Deployment]:
    """As ``deployment``, with a PostgreSQL Mlt every agent shares (task rows, read-through items)."""
    d = Deployment(mw_redis_url, mw_namespace, mw_postgres_dsn)
    try:
        yield d
    finally:
        d.close()


def metrics(agent: Any) -> dict[str, Any]:
    beat = ray.get(agent.heartbeat.remote())
    return dict(beat["memory_metrics"])


def bus_received(agent: Any) -> int:
    return int(ray.get(agent.mw_status.remote())["bus_received"])


def applied(agents: list[Any], before: list[int]) -> None:
    """Wait until every agent's bus has applied at least one more invalidation than ``before``."""
    for agent, n in zip(agents, before, strict=True):
        wait_until(lambda a=agent, n=n: bus_received(a) > n, 10, "the invalidation to reach an agent")


# --- the node tier ----------------------------------------------------------------------------------------------
def test_agents_on_a_node_share_one_node_cache_actor(pg_deployment: Deployment) -> None:
    d = pg_deployment
    store = open_store(d.config.mlt_dsn)
    try:
        store.put_item("doc", "shared", "d1", {"title": "one"})
    finally:
        store.close()
    a, b, c = d.spawn("agent-a", "agent-b", "agent-c")
    statuses = ray.get([x.mw_status.remote() for x in (a, b, c)])
    assert len({s["node_cache"] for s in statuses}) == 1
    assert node_caches(d.namespace) == [statuses[0]["node_cache"]]

    # A loads from Mlt and fills L2 and the node cache; B and C find it in the node cache (their L1).
    assert ray.get(a.get_or_load.remote("doc", "shared", "d1")) == {"title": "one"}
    assert ray.get(a.flush_node_tier.remote()) == 0
    assert ray.get(b.get_or_load.remote("doc", "shared", "d1")) == {"title": "one"}
    assert ray.get(c.get_item_typed.remote("doc", "shared", "d1")) == {"title": "one"}
    ma, mb, mc = metrics(a), metrics(b), metrics(c)
    assert ma["mw_mlt_loads"] == 1 and ma["mw_misses"] == 1
    assert mb["mw_l1_hits"] == 1 and mb["mw_mlt_loads"] == 0 and mb["mw_l2_hits"] == 0
    assert mc["mw_l1_hits"] == 1 and mc["mw_l1_node_hits"] == 1
    info = ray.get(d.node_cache().info.remote())
    assert info["items"] >= 1 and info["ops"]["hit"] >= 2

    # The node tier is bounded and TTL-capped like the in-process L1: every copy expires by MW_L1_TTL_S.
    expire_at = ray.get(d.node_cache().expire_at.remote(task_key("nope")))
    assert expire_at is None
    key = "global:item:doc:shared:d1"
    expire_at = ray.get(d.node_cache().expire_at.remote(key))
    assert expire_at is not None and expire_at <= time.time() + d.config.l1_ttl_s


def test_async_agent_awaits_the_node_cache(pg_deployment: Deployment) -> None:
    d = pg_deployment
    store = open_store(d.config.mlt_dsn)
    try:
        store.put_item("doc", "shared", "d2", "two")
    finally:
        store.close()
    (a,) = d.spawn("agent-sync")
    (b,) = d.spawn("agent-async", asyncio=True)
    assert ray.get(a.get_or_load.remote("doc", "shared", "d2")) == "two"
    ray.get(a.flush_node_tier.remote())
    # The async agent's read awaits the node actor's reply (RayNodeL1.get_async) and hits there.
    assert ray.get(b.get_item_typed.remote("doc", "shared", "d2")) == "two"
    mb = metrics(b)
    assert mb["mw_l1_hits"] == 1 and mb["mw_l1_node_reads"] == 1 and mb["mw_l1_node_errors"] == 0


# --- the checklist ------------------------------------------------------------------------------------------------
def test_double_prefix_prevention(deployment: Deployment) -> None:
    d = deployment
    a, b = d.spawn("agent-a", "agent-b")
    # An id that is already a full global key is used as given, never prefixed again.
    assert ray.get(a.set_global_item.remote("global:item:report:1", {"n": 1})) == "global:item:report:1"
    assert ray.get(a.set_global_item.remote("report:2", {"n": 2})) == "global:item:report:2"
    assert ray.get(a.set_global_item_typed.remote("task", "by_id", "77", {"id": "77"})) == "global:item:task:by_id:77"
    assert ray.get(b.get_item.remote("global:item:report:1", True)) == {"n": 1}
    assert ray.get(b.get_item.remote("report:2")) == {"n": 2}
    assert ray.get(b.get_item.remote("global:item:task:by_id:77", True)) == {"id": "77"}
    # A typed id carrying the prefix is refused (KeyGrammarError), it does not become global:item:global:item:...
    # (Checked by message: mw.errors' exceptions do not pickle yet, so Ray may hand back an
    # UnserializableException that carries the original KeyGrammarError's text.)
    with pytest.raises(ray.exceptions.RayError) as refused:
        ray.get(a.set_global_item_typed.remote("task", "by_id", "global:item:task:by_id:77", {}))
    assert KeyGrammarError.__name__ in str(refused.value) and "reserved prefix" in str(refused.value)

    client = d.client()
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{d.namespace}:*"))
    assert d.phys("global:item:report:1") in keys and d.phys("global:item:task:by_id:77") in keys
    assert not [k for k in keys if DOUBLE_PREFIX in k]
    hot = metrics(b)["mw_hot_items"]
    assert not [name for name, _ in hot if "global:item" in name]


def test_task_caching_lifecycle_seen_across_agents(pg_deployment: Deployment) -> None:
    d = pg_deployment
    store = open_store(d.config.mlt_dsn)
    try:
        store.put_task({"id": "123", "status": "running", "owner": "agent-a"})
    finally:
        store.close()
    a, c = d.spawn("agent-a", "agent-c")
    (b,) = d.spawn("agent-b", asyncio=True)
    agents = [a, b, c]

    # Cache: A loads the row once; B and C get it from the cache without touching Mlt.
    assert ray.get(a.get_task_cached.remote("123"))["status"] == "running"
    ray.get(a.flush_node_tier.remote())
    assert ray.get(b.get_task_cached.remote("123"))["status"] == "running"
    assert ray.get(c.get_task_cached.remote("123"))["status"] == "running"
    assert [metrics(x)["mw_task_cache_misses"] for x in agents] == [1, 0, 0]
    assert [metrics(x)["mw_task_cache_hits"] for x in agents] == [0, 1, 1]

    # Invalidate on status change: A completes the task (Mlt write, then invalidation everywhere).
    before = [bus_received(x) for x in (b, c)]
    row = ray.get(a.task_completed.remote("123"))
    assert row["status"] == "completed"
    applied([b, c], before)
    # Miss: B and C do not serve the old row from L0, the node cache or L2; each one misses and reloads.
    assert ray.get(b.get_task_cached.remote("123"))["status"] == "completed"
    assert ray.get(c.get_task_cached.remote("123"))["status"] == "completed"
    mb, mc = metrics(b), metrics(c)
    assert mb["mw_task_cache_misses"] + mc["mw_task_cache_misses"] >= 1
    assert metrics(a)["mw_task_evictions"] == 1

    # cache_task_row -> invalidate_task_cache -> miss, with the writer and the reader in different processes.
    # The write publishes too: A counts that message first, or it could be taken for the invalidation's.
    before = [bus_received(a)]
    ttl = ray.get(c.cache_task_row.remote({"id": "124", "status": "completed", "owner": "agent-c"}))
    assert 540 <= ttl <= 600
    applied([a], before)
    assert ray.get(a.get_task_cached.remote("124"))["status"] == "completed"
    misses_before = metrics(a)["mw_task_cache_misses"]
    before = [bus_received(a)]
    ray.get(c.invalidate_task_cache.remote("124"))
    applied([a], before)
    assert ray.get(a.get_task_cached.remote("124")) is None  # not in Mlt: the cache no longer answers for it
    assert metrics(a)["mw_task_cache_misses"] == misses_before + 1
    client = d.client()
    assert client.exists(d.phys(task_key("124"))) == 0


def test_telemetry_in_heartbeats_aggregates_every_call(deployment: Deployment) -> None:
    d = deployment
    a, b = d.spawn("agent-a", "agent-b")
    before = [bus_received(b)]
    ray.get(a.set_global_item_typed.remote("doc", "s", "x", "value-x"))
    applied([b], before)  # B has dropped its copies for A's write: what follows counts only B's own reads
    for _ in range(4):
        assert ray.get(b.get_item_typed.remote("doc", "s", "x")) == "value-x"
    assert ray.get(b.get_item_typed.remote("doc", "s", "absent")) is None
    ray.get(b.set_negative_cache.remote("doc", "s", "gone"))
    assert ray.get(b.check_negative_cache.remote("doc", "s", "gone")) is True

    first = ray.get(b.heartbeat.remote())
    m = first["memory_metrics"]
    for field, kind in METRIC_FIELDS.items():
        assert field in m, field
        assert isinstance(m[field], kind) and not isinstance(m[field], bool), (field, m[field])
    assert m["mw_l1_hits"] + m["mw_l2_hits"] == 1 and m["mw_l0_hits"] == 3
    assert m["mw_misses"] == 1 and m["mw_negative_cache_hits"] == 1
    assert m["mw_hit_ratio"] == pytest.approx(4 / 5)
    assert ["doc:s:x", 4] in m["mw_hot_items"]
    assert m["mw_l1_node"] == "actor" and m["mw_tier_errors"] == 0

    # Cumulative across calls and heartbeats: counts grow, the ratio comes from the summed counts.
    for _ in range(5):
        ray.get(b.get_item_typed.remote("doc", "s", "x"))
    second = ray.get(b.heartbeat.remote())
    m2 = second["memory_metrics"]
    assert second["heartbeats"] == first["heartbeats"] + 1
    assert m2["mw_l0_hits"] == 8 and m2["mw_misses"] == 1
    assert m2["mw_hit_ratio"] == pytest.approx(9 / 10)

    # A configuration reload replaces the manager; the heartbeat keeps counting from where it was.
    assert ray.get(b.reload_config.remote(d.env(MW_L1_TTL_S="12")))
    assert ray.get(b.config.remote())["l1_ttl_s"] == 12.0
    ray.get(b.get_item_typed.remote("doc", "s", "x"))
    m3 = metrics(b)
    assert m3["mw_l0_hits"] + m3["mw_l1_hits"] + m3["mw_l2_hits"] == 10 and m3["mw_misses"] == 1
    assert m3["mw_hit_ratio"] == pytest.approx(10 / 11)
    assert next(count for name, count in m3["mw_hot_items"] if name == "doc:s:x") >= 9


def test_ttls_configured_through_environment_variables(deployment: Deployment) -> None:
    d = deployment
    checklist = {
        "MW_TASK_TTL_RUNNING_S": "30",
        "MW_TASK_TTL_COMPLETED_S": "600",
        "MW_TASK_TTL_FAILED_S": "300",
        "MW_TASK_TTL_NEGATIVE_S": "30",
        "MW_L1_TTL_S": "5",
        "MW_L2_TTL_S": "120",
        "MW_TTL_JITTER": "0",
    }
    (a,) = d.spawn("agent-ttl", **checklist)
    # Without a bus: its invalidations would race the node-cache copies checked below (see docs/ray.md).
    (plain,) = d.spawn("agent-defaults", MW_PUBSUB="false")
    config = ray.get(a.config.remote())
    assert config["l1_ttl_s"] == 5.0 and config["l2_ttl_s"] == 120.0
    assert config["task_ttls_s"]["running"] == 30.0 and config["task_ttls_s"]["failed"] == 300.0
    assert ray.get(plain.config.remote())["task_ttls_s"]["running"] == 10.0  # the default, not the driver's

    assert ray.get(a.cache_task_row.remote({"id": "r1", "status": "running"})) == 30.0
    assert ray.get(a.cache_task_row.remote({"id": "c1", "status": "completed"})) == 600.0
    assert ray.get(a.cache_task_row.remote({"id": "f1", "status": "failed"})) == 300.0
    ray.get(a.set_global_item_typed.remote("doc", "s", "ttl", "v"))
    ray.get(a.flush_node_tier.remote())
    client = d.client()
    assert 28_000 < client.pttl(d.phys(task_key("r1"))) <= 30_000
    assert 590_000 < client.pttl(d.phys(task_key("c1"))) <= 600_000
    assert 110_000 < client.pttl(d.phys("global:item:doc:s:ttl")) <= 120_000
    # The node cache keeps a copy for MW_L1_TTL_S at most, however long the item lives.
    now = time.time()
    for key in (task_key("c1"), "global:item:doc:s:ttl"):
        expire_at = ray.get(d.node_cache().expire_at.remote(key))
        assert expire_at is not None and now < expire_at <= now + 5.0


def test_node_cache_actor_restart(pg_deployment: Deployment) -> None:
    d = pg_deployment
    store = open_store(d.config.mlt_dsn)
    try:
        for i in range(3):
            store.put_item("doc", "shared", f"k{i}", f"v{i}")
    finally:
        store.close()
    a, b = d.spawn("agent-a", "agent-b", MW_TIER_RETRY_S="0.5")
    assert ray.get(a.get_or_load.remote("doc", "shared", "k0")) == "v0"
    ray.get(a.flush_node_tier.remote())
    old = ray.get(d.node_cache().info.remote())["incarnation"]

    ray.kill(d.node_cache())  # "Restart Ray actors": the node cache goes away under running agents
    wait_until(lambda: not node_caches(d.namespace), 10, "the killed node cache to be gone")

    # The agents keep answering: the node tier is a tier error, the read goes on to L2.
    ray.get(b.clear_l0.remote())
    assert ray.get(b.get_or_load.remote("doc", "shared", "k0")) == "v0"
    mb = metrics(b)
    assert mb["mw_l2_hits"] == 1 and mb["mw_mlt_loads"] == 0
    assert mb["mw_l1_node_errors"] + mb["mw_l1_node_skipped"] >= 1
    assert mb["mw_tier_errors"] >= mb["mw_l1_node_errors"]

    # After MW_TIER_RETRY_S the agents re-acquire the node cache: a new actor, found by both.
    def reacquired() -> bool:
        ray.get(b.clear_l0.remote())
        ray.get(b.get_or_load.remote("doc", "shared", "k0"))
        return metrics(b)["mw_l1_node_reacquired"] >= 1 and ray.get(b.node_cache_info.remote()) is not None

    wait_until(reacquired, 30, "agent-b to re-acquire the node cache")
    new = ray.get(d.node_cache().info.remote())["incarnation"]
    assert new != old
    assert len(node_caches(d.namespace)) == 1

    # And it serves again: A fills k1 through it, B finds it there.
    def a_recovered() -> bool:
        info = ray.get(a.node_cache_info.remote())
        return info is not None and info["incarnation"] == new

    wait_until(a_recovered, 30, "agent-a to re-acquire the node cache")
    assert ray.get(a.get_or_load.remote("doc", "shared", "k1")) == "v1"
    ray.get(a.flush_node_tier.remote())
    hits = metrics(b)["mw_l1_hits"]
    assert ray.get(b.get_or_load.remote("doc", "shared", "k1")) == "v1"
    assert metrics(b)["mw_l1_hits"] == hits + 1


# --- configuration plumbing (no actors) --------------------------------------------------------------------------
def test_env_vars_round_trip_every_setting() -> None:
    config = MwConfig.from_env(
        {},
        redis_url="redis://127.0.0.1:6390/0",
        mlt_dsn="postgresql://u@h/db",
        namespace="ns-1",
        enabled=False,
        l1_ttl_s=2.5,
        ttl_jitter=0.0,
        pubsub=False,
        codec="msgpack",
    ).replace(task_ttls_s={**MwConfig().task_ttls_s, "running": 30.0, "negative": 0.0})
    env = env_vars(config)
    assert MwConfig.from_env(env) == config
    assert env["MW_TASK_TTL_RUNNING_S"] == "30.0" and env["MW_L1_TTL_S"] == "2.5"
    assert MwConfig.from_env(env_vars(MwConfig())) == MwConfig()
    assert agent_options(env, num_cpus=0)["runtime_env"]["env_vars"] == env


def test_in_process_l1_on_request(deployment: Deployment) -> None:
    """``MW_RAY_L1=process``: no node actor, each agent process keeps its own L1 (see docs/ray.md, when it pays)."""
    d = deployment
    a, b = d.spawn("agent-a", "agent-b", MW_RAY_L1="process")
    ray.get(a.set_global_item_typed.remote("doc", "s", "p", "value-p"))
    assert ray.get(b.get_item_typed.remote("doc", "s", "p")) == "value-p"
    m = metrics(b)
    assert m["mw_l1_node"] == "process" and m["mw_l2_hits"] == 1 and m["mw_l1_node_reads"] == 0
    assert ray.get(b.config.remote())["node_l1"] == "process"
    assert node_caches(d.namespace) == []
