"""Cluster hash tags (mw.tiers.slots): every Redis key of one item lands in one slot, and the mapping inverts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mw import keys as K
from mw.errors import ConfigError
from mw.tiers.l2 import RedisTier
from mw.tiers.slots import by_slot, hash_slot, tagged, untagged
from mw.tiers.topology import RedisTopology

component = st.text(st.characters(codec="utf-8", exclude_characters=":\x00"), min_size=1, max_size=12).filter(
    lambda t: t.isprintable()
)
item_id = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=24).filter(
    lambda t: t.isprintable() and not t.startswith(K.RESERVED_PREFIXES)
)
namespace = st.text("abcxyz0123:-_", min_size=0, max_size=10)


def _key(kind: str, scope: str, ident: str) -> str:
    return K.global_typed_key(kind, scope, ident)


def _cluster_tier(ns: str) -> RedisTier:
    """A tier that maps keys as on a cluster; it connects to nothing until a command is sent (none is here)."""
    return RedisTier(None, namespace=ns, topology=RedisTopology("redis://127.0.0.1:1/0", "cluster"))


@settings(deadline=None)  # no wall-clock limit: a busy machine slows the first example's imports
@given(component, component, item_id, namespace)
def test_an_items_value_marker_and_lease_share_one_slot(kind: str, scope: str, ident: str, ns: str) -> None:
    try:
        key = _key(kind, scope, ident)
    except Exception:  # the grammar refuses some parts (reserved words); those keys never reach L2
        return
    tier = _cluster_tier(ns)
    try:
        phys = [tier.phys(k) for k in (key, K.negative_key(key), K.lease_key(key))]
        assert len({hash_slot(p) for p in phys}) == 1, phys
        assert [tier.logical(p) for p in phys] == [key, K.negative_key(key), K.lease_key(key)]
    finally:
        tier.close()


@settings(deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_untagged_inverts_tagged(text: str) -> None:
    for key in (text, K.negative_key(text), K.lease_key(text)):
        assert untagged(tagged(key)) == key


def test_without_the_tag_an_items_keys_spread_over_slots() -> None:
    """The check above can fail: the standalone mapping (no tag) puts most items' markers in another slot."""
    plain = RedisTier(None, namespace="ns")
    try:
        keys = [_key("doc", "s", str(i)) for i in range(50)]
        apart = [k for k in keys if hash_slot(plain.phys(k)) != hash_slot(plain.phys(K.negative_key(k)))]
        assert len(apart) > 40
    finally:
        plain.close()


def test_a_brace_inside_an_id_ends_the_tag_at_the_same_place_in_every_key() -> None:
    tier = _cluster_tier("ns")
    try:
        key = _key("doc", "s", "a}b{c}")
        phys = [tier.phys(k) for k in (key, K.negative_key(key), K.lease_key(key))]
        assert len({hash_slot(p) for p in phys}) == 1
        assert tier.phys(key) == "ns:{global:item:doc:s:a}b{c}}"
    finally:
        tier.close()


def test_by_slot_groups_positions_in_first_seen_order() -> None:
    keys = ["{a}x", "{b}y", "{a}z"]
    groups = by_slot(keys)
    assert list(groups.values()) == [[0, 2], [1]]
    assert list(groups) == [hash_slot("{a}"), hash_slot("{b}")]


@pytest.mark.parametrize(
    ("changes", "var"),
    [
        ({"redis_cluster": True}, "MW_REDIS_CLUSTER"),
        ({"redis_cluster": True, "redis_url": "redis://h:1/0", "namespace": "a{b"}, "MW_NAMESPACE"),
        ({"redis_cluster": True, "redis_url": "redis://h:1/0", "redis_sentinels": "h:1", "redis_sentinel_master": "m"},
         "MW_REDIS_CLUSTER"),
        ({"redis_sentinels": "h:1"}, "MW_REDIS_SENTINEL_MASTER"),
        ({"redis_sentinel_master": "m"}, "MW_REDIS_SENTINELS"),
        ({"redis_sentinels": "h:1,nonsense", "redis_sentinel_master": "m"}, "MW_REDIS_SENTINELS"),
        ({"redis_sentinels": "h:99999", "redis_sentinel_master": "m"}, "MW_REDIS_SENTINELS"),
        ({"redis_sentinels": "h:1", "redis_sentinel_master": "m", "redis_url": "rediss://h:1/0"}, "MW_REDIS_URL"),
        ({"redis_sentinels": "h:1", "redis_sentinel_master": "two words"}, "MW_REDIS_SENTINEL_MASTER"),
        ({"redis_sentinels": "h:1", "redis_sentinel_master": "m", "redis_wait_timeout_s": 0.5},
         "MW_REDIS_WAIT_TIMEOUT_S"),
        ({"redis_wait_replicas": -1}, "MW_REDIS_WAIT_REPLICAS"),
        ({"redis_cluster": True, "redis_url": "redis://h:1/0", "redis_wait_replicas": 1}, "MW_REDIS_WAIT_REPLICAS"),
        ({"redis_wait_timeout_s": 0.0}, "MW_REDIS_WAIT_TIMEOUT_S"),
    ],
)  # fmt: skip
def test_a_topology_missing_what_it_needs_is_a_config_error_naming_the_variable(
    changes: dict[str, object], var: str
) -> None:
    from mw import MwConfig

    with pytest.raises(ConfigError) as caught:
        MwConfig(**changes)  # type: ignore[arg-type]
    assert caught.value.variable == var, caught.value


def test_the_environment_selects_the_topology() -> None:
    from mw import MwConfig

    cluster = MwConfig.from_env({"MW_REDIS_URL": "redis://h:7000/0", "MW_REDIS_CLUSTER": "true"})
    assert RedisTopology.of(cluster).kind == "cluster" and RedisTopology.of(cluster).slotted
    sentinel = MwConfig.from_env({"MW_REDIS_SENTINELS": "s1:26379, s2:26380", "MW_REDIS_SENTINEL_MASTER": "mymaster"})
    topology = RedisTopology.of(sentinel)
    assert topology.kind == "sentinel" and topology.sentinels == (("s1", 26379), ("s2", 26380))
    assert topology.master == "mymaster" and not topology.slotted
    assert cluster.cluster_identity() != cluster.replace(redis_cluster=False).cluster_identity()
    assert sentinel.wait_replicas == 1 and cluster.wait_replicas == 0 and MwConfig().wait_replicas == 0
    assert MwConfig.from_env({"MW_REDIS_WAIT_REPLICAS": "2"}).wait_replicas == 2


def test_a_slot_no_node_serves_is_an_outage_not_a_bug() -> None:
    """redis-py raises SlotNotCoveredError (not a RedisError) when a slot's node is gone from its map."""
    import redis.exceptions as rx

    from mw.tiers.l2_faults import Fault, classify, errors

    exc = rx.SlotNotCoveredError("slot 7 is not covered")
    assert isinstance(exc, errors()) and classify(exc) is Fault.UNAVAILABLE


def test_a_tier_built_by_hand_refuses_a_brace_in_a_cluster_namespace() -> None:
    with pytest.raises(ConfigError) as caught:
        _cluster_tier("a{b")
    assert caught.value.variable == "MW_NAMESPACE"
