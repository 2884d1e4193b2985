"""Each simulated node is a cluster of its own; the simulated bus carries their invalidations, per message, after a
seeded lag, through the runtime's receive path; ``pubsub_dropped`` loses messages and the runtime's gap detection
must flush what they would have invalidated."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
import simpy
from simhelpers import Run, check, failed, small
from test_sim_determinism import differences, numbers

from mw import keys as K
from mw.cluster import Cluster
from simulations.backends import Backend
from simulations.model import START_EPOCH, Model
from simulations.runner import run_scenario
from simulations.scenario import FaultWindow, ScenarioError, parse_scenario
from simulations.settings import for_run
from simulations.sim_bus import BUS_LAG_P50_S, BUS_LAG_P99_S, BusLag, SimBus, record_of
from simulations.truth import BEYOND, BUS_LAG_S, FRESH, WITHIN, Truth

HOT_WRITES = {"write_fraction": 0.05, "write_popularity": "zipf"}
"""Enough writes of items other nodes hold for a lost message to matter in a small run."""
DROP = FaultWindow("pubsub_dropped", at_s=100.0, for_s=60.0)


def _dropped_run(**sections: Any) -> dict[str, Any]:
    scenario = small("staging-synthetic", items=HOT_WRITES, **sections)
    scenario = dataclasses.replace(scenario, faults=(DROP,), runtime={**scenario.runtime, "tier_retry_s": 0})
    return run_scenario(scenario, Backend("embedded"), baseline=False)


def test_a_write_reaches_another_nodes_tiers_only_when_its_message_arrives() -> None:
    env = simpy.Environment()
    scenario = small("staging-synthetic", run={"nodes": 2})
    stores = {"redis_url": None, "mlt_dsn": None, "namespace": f"bus-{random.random()}"}
    config = for_run(scenario.runtime, stores, caching=True, rng_seed="s").config
    bus = SimBus(env, lambda: START_EPOCH + env.now, random.Random("lag"))
    model = Model(env, scenario, config, bus=bus, cross_node_lag_s=bus.lag.max_s)
    try:
        writer, reader = model.add_agent(), model.add_agent()
        assert (writer.node, reader.node) == ("node-0", "node-1")
        assert writer.manager.cluster is not reader.manager.cluster, "a node is a process of its own"
        assert reader.manager.cluster.l2.client is not writer.manager.cluster.l2.client
        model.store.put_item("doc", "s", "1", "v1")
        assert reader.manager.get_item_typed("doc", "s", "1") == "v1"
        key = K.global_typed_key("doc", "s", "1")
        writer.manager.set_global_item_typed("doc", "s", "1", "v2")
        assert key in reader.l0 and bus.sent == 1 and bus.delivered == 0
        env.run(until=BUS_LAG_S)
        assert bus.delivered == 1 and key not in reader.l0
        assert 0 < bus.max_lag_s <= BUS_LAG_S
        assert reader.manager.get_item_typed("doc", "s", "1") == "v2"
    finally:
        for agent in model.agents:
            agent.manager.close()
        model.admin.close()
        model.close_clusters()


def test_every_message_reaches_every_other_node_and_nothing_flushes(simulate: Run) -> None:
    result = simulate("staging-synthetic", items=HOT_WRITES)
    assert failed(result) == set()
    bus = result["runs"]["cached"]["bus"]
    assert bus["pubsub"] and bus["transport"] == "simulated" and bus["sent"] > 0
    assert bus["delivered"] == bus["received"] == bus["sent"] * 3, "4 nodes: each message reaches the 3 others"
    assert bus["flushes"] == 0 and bus["dropped"] == 0
    assert 0 < bus["max_lag_ms"] == bus["max_applied_lag_ms"] <= BUS_LAG_S * 1000
    assert result["runs"]["cached"]["stale"]["tolerance_s"]["item"] == BUS_LAG_S


def test_a_run_replays_under_its_seed_bus_lags_included() -> None:
    one, two = _dropped_run(), _dropped_run()
    assert one["runs"]["cached"]["bus"] == two["runs"]["cached"]["bus"]
    diff = differences(numbers(one), numbers(two))
    assert not diff, "\n".join(diff[:40])
    other = _dropped_run(run={"seed": 8})["runs"]["cached"]["bus"]
    assert other["max_lag_ms"] != one["runs"]["cached"]["bus"]["max_lag_ms"]


def test_the_lag_distribution_is_seeded_and_bounded() -> None:
    lag = BusLag()
    assert (lag.p50_s, lag.p99_s, lag.max_s) == (BUS_LAG_P50_S, BUS_LAG_P99_S, BUS_LAG_S)
    a, b, c = (lag.sampler(random.Random(seed)) for seed in ("x", "x", "y"))
    draws = [a() for _ in range(5000)]
    assert draws == [b() for _ in range(5000)] and draws != [c() for _ in range(5000)]
    ranked = sorted(draws)
    assert ranked[2500] == pytest.approx(BUS_LAG_P50_S, rel=0.1)
    assert ranked[4950] == pytest.approx(BUS_LAG_P99_S, rel=0.35)
    tight = BusLag(0.001, 0.01, 0.012).sampler(random.Random(1))
    assert max(tight() for _ in range(1000)) == 0.012, "cut at max_s: the oracle's bound for cross-node writers"
    with pytest.raises(ValueError, match="p50_s <= p99_s <= max_s"):
        BusLag(0.01, 0.001)


def test_a_cache_key_names_its_record() -> None:
    assert record_of("global:item:doc:shared:i12") == "i12"
    assert record_of("mw:neg:global:item:task:by_id:t3") == "t3"
    assert record_of("mw:lease:global:item:doc:shared:i12") is None and record_of("global:item:x") is None


def test_pubsub_dropped_is_a_fault_kind() -> None:
    scenario = parse_scenario(
        {"name": "x", "runtime": {"tier_retry_s": 0}, "faults": [{"kind": "pubsub_dropped", "at_s": 5, "for_s": 2}]}
    )
    assert scenario.faults[0].kind == "pubsub_dropped"
    with pytest.raises(ScenarioError, match="tier_retry_s = 0"):
        parse_scenario({"name": "x", "faults": [{"kind": "pubsub_dropped", "at_s": 5, "for_s": 2}]})


def test_dropped_messages_are_caught_by_gap_detection_and_no_read_is_stale_beyond_its_bound() -> None:
    result = _dropped_run()
    assert failed(result) == set()
    cached = result["runs"]["cached"]
    bus, stale = cached["bus"], cached["stale"]
    assert result["faults"] == [{"start_s": 100.0, "end_s": 160.0, "what": "bus messages dropped"}]
    assert bus["dropped"] > 0
    assert bus["flushes"] > 0, "each receiver flushed once the origin's next message showed the hole"
    assert bus["delivered"] == (bus["sent"] - bus["dropped"]) * 3
    assert stale["stale_within_bounds"]["item"] > 0, "copies a lost message left were served until the flush"
    assert check(result, "no_stale_reads")["passed"]


def test_a_runtime_that_skips_the_flush_on_a_gap_fails_no_stale_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Cluster, "flush_local", lambda self: 0)
    broken = _dropped_run()
    assert failed(broken) == {"no_stale_reads"}
    cached = broken["runs"]["cached"]
    assert cached["bus"]["flushes"] > 0, "the bus saw the gap; the tiers were not flushed"
    assert cached["stale"]["stale_beyond_bounds"]["item"] > 0


def test_pubsub_dropped_needs_the_simulated_bus() -> None:
    scenario = small("staging-synthetic")
    scenario = dataclasses.replace(scenario, faults=(DROP,), runtime={**scenario.runtime, "tier_retry_s": 0})
    backend = Backend("redis", redis_url="redis://127.0.0.1:1", description="a real Redis")
    with pytest.raises(ScenarioError, match="pubsub_dropped needs the simulated bus"):
        run_scenario(scenario, backend, baseline=False, realtime=1000.0)


def test_a_reader_on_the_writers_node_is_held_to_the_in_process_bound_others_to_the_bus() -> None:
    truth = Truth()
    truth.created("i1", 1, 0.0)
    truth.superseded("i1", 2, 10.0, 10.0 + BUS_LAG_S, writer="node-0", local_deadline=10.0)
    assert truth.judge("i1", 1, 10.1, "node-0") == BEYOND, "its own node dropped every copy before the write returned"
    assert truth.judge("i1", 1, 10.1, "node-1") == WITHIN, "another node hears of it over the bus"
    assert truth.judge("i1", 1, 10.1) == WITHIN and truth.judge("i1", 1, 10.3, "node-1") == BEYOND
    assert truth.judge("i1", 1, 9.9, "node-0") == FRESH


def test_a_lost_message_holds_its_versions_until_released_and_no_longer() -> None:
    truth = Truth()
    truth.created("i1", 1, 0.0)
    truth.superseded("i1", 2, 10.0, 10.25)
    held = truth.hold("i1", 10.0)
    assert held == [("i1", 1)] and truth.judge("i1", 1, 50.0) == WITHIN, "unknown yet when the loss shows"
    again = truth.hold("i1", 11.0)  # a second loss holds it too
    truth.release(held, 12.0)
    assert truth.judge("i1", 1, 50.0) == WITHIN, "still held by the second loss"
    truth.release(again, 13.0)
    assert truth.judge("i1", 1, 12.9) == WITHIN and truth.judge("i1", 1, 13.1) == BEYOND
    assert truth.hold("i1", 20.0) == [], "a version past its deadline is not revived"
