"""The bus transport seam: clusters of one process told apart by name, and a carrier other than Redis pub/sub.

A transport (here a list the test delivers from by hand, as the simulator does in simulated time) gets every message a
write or delete publishes once Redis took the command; delivery goes through the bus's own receive path, so sequence
tracking, gap detection and flushes are the runtime's. Runs on fakeredis and on a real Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mw import MwConfig, MwManager
from mw import keys as K
from mw.clock import ManualClock
from mw.cluster import Cluster, cluster_for
from mw.errors import TierUnavailable
from mw.faults import Fail, injected
from mw.invalidation import GAP_GRACE_S, INV_CHANNEL, InvalidationBus


class ListTransport:
    """Keeps what each bus sent; the test hands messages on with :meth:`deliver_all`."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.buses: list[InvalidationBus] = []
        self.sent: list[tuple[InvalidationBus, str, bytes]] = []

    def now(self) -> float:
        return self.clock()

    def attach(self, bus: InvalidationBus) -> None:
        self.buses.append(bus)

    def detach(self, bus: InvalidationBus) -> None:
        self.buses.remove(bus)

    def send(self, bus: InvalidationBus, channel: str, payload: bytes) -> None:
        self.sent.append((bus, channel, payload))

    def deliver_all(self, skip: int = -1) -> None:
        """Every message sent so far to every other bus, in order; message number ``skip`` is lost."""
        for n, (sender, channel, payload) in enumerate(self.sent):
            if n == skip:
                continue
            for bus in self.buses:
                if bus is not sender:
                    bus.deliver(channel, payload)
        self.sent.clear()


@pytest.fixture
def transport(clock: ManualClock) -> ListTransport:
    return ListTransport(clock)


@pytest.fixture
def nodes(base_config: MwConfig, clock: ManualClock, transport: ListTransport) -> Iterator[tuple[Cluster, Cluster]]:
    a = cluster_for(base_config, clock, name="node-a", transport=transport)
    b = cluster_for(base_config, clock, name="node-b", transport=transport)
    assert a.bus is not None and b.bus is not None  # a bus listens once its cluster opened L2 (this does)
    yield a, b
    a.close()
    b.close()


def _cached(m: MwManager, item: str, value: str) -> None:
    m.mlt.put_item("doc", "s", item, value)
    assert m.get_item_typed("doc", "s", item) == value
    key = K.global_typed_key("doc", "s", item)
    assert key in m.l0 and m.l1.get(key) is not None


def test_named_clusters_of_one_configuration_share_only_the_servers(
    nodes: tuple[Cluster, Cluster], base_config: MwConfig, clock: ManualClock, transport: ListTransport
) -> None:
    a, b = nodes
    assert a is not b and a.name == "node-a"
    assert cluster_for(base_config, clock, name="node-a") is a, "a name is one cluster"
    assert a.bus is not None and b.bus is not None and a.bus.origin != b.bus.origin
    assert transport.buses == [a.bus, b.bus]
    assert cluster_for(base_config, clock) is not a, "the unnamed cluster is another one"
    with pytest.raises(ValueError, match="another bus transport"):
        cluster_for(base_config, clock, name="node-a", transport=ListTransport(clock))
    with pytest.raises(ValueError, match="config differs"):
        MwManager("x", base_config.replace(l1_max_items=7), cluster=a)
    with pytest.raises(ValueError, match="clock is not"):
        MwManager("x", clock=ManualClock(), cluster=a)
    m = MwManager("x", cluster=a, node="n1")
    assert m.cluster is a and m.config is a.config and m.clock is clock
    m.close()


def test_a_transport_carries_invalidations_through_the_real_receive_path(
    nodes: tuple[Cluster, Cluster], transport: ListTransport, clock: ManualClock
) -> None:
    a, b = nodes
    writer, reader = MwManager("w", cluster=a), MwManager("r", cluster=b)
    names = {f"mw-inv-{bus.origin[:6]}" for bus in (a.bus, b.bus) if bus is not None}
    assert not [t for t in threading.enumerate() if t.name in names], "no subscriber thread"
    raw = a.l2.client.pubsub()
    raw.subscribe(a.l2.channel(INV_CHANNEL))
    assert raw.get_message(timeout=1.0)["type"] == "subscribe"
    _cached(reader, "1", "v1")
    writer.set_global_item_typed("doc", "s", "1", "v2")
    key = K.global_typed_key("doc", "s", "1")
    assert [(s, ch) for s, ch, _ in transport.sent] == [(a.bus, INV_CHANNEL)]
    assert raw.get_message(timeout=0.2) is None, "nothing was published on Redis"
    raw.close()
    assert key in reader.l0, "the other cluster hears of it only when the transport delivers"
    clock.advance(0.003)
    transport.deliver_all()
    assert key not in reader.l0 and reader.l1.get(key) is None
    assert reader.get_item_typed("doc", "s", "1") == "v2"
    bus = b.bus
    assert bus is not None and bus.received == 1 and bus.flushes == 0
    assert bus.lag.summary()["max_ms"] == pytest.approx(3.0, abs=0.01), "lag is measured on the transport's clock"
    writer.del_global_item_typed("doc", "s", "1")
    transport.deliver_all()
    assert key not in reader.l0 and bus.received == 2
    writer.close()
    reader.close()


def test_a_lost_message_flushes_the_receiver_once_the_grace_passes_on_the_transport_clock(
    nodes: tuple[Cluster, Cluster], transport: ListTransport, clock: ManualClock
) -> None:
    a, b = nodes
    writer, reader = MwManager("w", cluster=a), MwManager("r", cluster=b)
    writer.set_global_item_typed("doc", "s", "0", "first")
    transport.deliver_all()  # the receiver knows the origin's sequence from here on
    _cached(reader, "1", "v1")
    writer.set_global_item_typed("doc", "s", "1", "v2")  # lost
    writer.set_global_item_typed("doc", "s", "2", "x")  # shows the hole
    transport.deliver_all(skip=0)
    bus = b.bus
    assert bus is not None
    key = K.global_typed_key("doc", "s", "1")
    bus.check()
    assert bus.flushes == 0 and key in reader.l0, "a hole may be reordering: it waits for the grace"
    clock.advance(GAP_GRACE_S / 2)
    bus.check()
    assert bus.flushes == 0
    clock.advance(GAP_GRACE_S)
    bus.check()
    assert bus.flushes == 1 and key not in reader.l0 and len(reader.l1) == 0
    assert reader.get_item_typed("doc", "s", "1") == "v2"
    writer.close()
    reader.close()


def test_a_command_redis_refused_hands_nothing_to_the_transport(
    nodes: tuple[Cluster, Cluster], transport: ListTransport
) -> None:
    a, _ = nodes
    writer = MwManager("w", cluster=a)
    writer.set_global_item_typed("doc", "s", "1", "v1")
    transport.sent.clear()

    def down(point: str, _key: str | None) -> Fail | None:
        return Fail(ConnectionError("injected")) if point.startswith("l2.") else None

    with injected(down):
        writer.set_global_item_typed("doc", "s", "1", "v2")
        with pytest.raises(TierUnavailable):
            a.l2.publish(INV_CHANNEL, b"{}")
    assert transport.sent == [], "the write is pending for its replay, not sent"
    assert a.pending
    writer.close()


def test_a_malformed_delivery_flushes(nodes: tuple[Cluster, Cluster]) -> None:
    _, b = nodes
    reader = MwManager("r", cluster=b)
    _cached(reader, "1", "v1")
    assert b.bus is not None
    b.bus.deliver(INV_CHANNEL, b"garbage")
    assert b.bus.flushes == 1 and len(reader.l0) == 0
    reader.close()


def measure_bus_lag(writer: MwManager, reader: MwManager, n: int) -> dict[str, float]:
    """Publish-to-apply lag of ``n`` invalidations from ``writer``'s cluster to ``reader``'s over Redis pub/sub (the
    receiver's own figures, ``bus.lag``): the helper behind the simulated bus's defaults, on the test's server."""
    bus = reader.cluster.bus
    assert bus is not None and bus.start(5.0)
    before = bus.received
    for i in range(n):
        writer.del_global_item_typed("doc", "lag", f"k{i}")
    deadline = time.monotonic() + 30
    while bus.received < before + n and time.monotonic() < deadline:
        time.sleep(0.005)
    return bus.lag.summary()


@pytest.mark.mw_real_servers
def test_named_clusters_on_a_real_redis_hear_each_other_over_pub_sub(
    real_l2_settings: dict[str, Any], mw_namespace: str, record_property: Callable[[str, object], None]
) -> None:
    """Without a transport, named clusters are processes on the real bus; the lag they measure is reported, never
    asserted (wall time)."""
    config = MwConfig.from_env({}, namespace=mw_namespace, **real_l2_settings)
    a, b = cluster_for(config, name="lag-a"), cluster_for(config, name="lag-b")
    try:
        writer, reader = MwManager("w", cluster=a), MwManager("r", cluster=b)
        assert a.bus is not None and b.bus is not None and a.bus.transport is None
        lag = measure_bus_lag(writer, reader, 300)
        record_property("bus_lag", lag)
        print(f"bus lag over {a.l2.describe()}: {lag}")
        assert lag["count"] == 300 and b.bus.flushes == 0
        writer.close()
        reader.close()
    finally:
        a.close()
        b.close()
