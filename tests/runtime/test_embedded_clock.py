"""The embedded L2's TTLs run on the runtime's clock (:mod:`mw.tiers.embedded`): a key written with ``PX`` by a
client on a manual or simulated clock expires when that clock says so, whatever the wall clock does, and every
other client of the server keeps the wall clock."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest

import mw
from mw import MwConfig, MwManager
from mw import keys as K
from mw.clock import ManualClock
from mw.tiers.embedded import embedded_client, embedded_server, follows_clocks


@pytest.fixture
def on_clock() -> Iterator[Callable[[ManualClock], Any]]:
    made: list[Any] = []

    def make(clock: ManualClock) -> Any:
        client = embedded_client(embedded_server(), clock)
        made.append(client)
        return client

    yield make
    for client in made:
        client.delete("clk:a", "clk:b")
        client.close()


def test_this_fakeredis_lets_the_server_follow_clocks() -> None:
    assert follows_clocks()


def test_a_px_expires_by_the_senders_clock_not_the_wall(on_clock: Callable[[ManualClock], Any]) -> None:
    clock = ManualClock(start=1_800_000_000.0)
    client = on_clock(clock)
    client.set("clk:a", b"v", px=50)
    time.sleep(0.1)  # twice the PX on the wall clock: still there, the client's clock has not moved
    assert client.get("clk:a") == b"v"
    assert client.pttl("clk:a") == 50
    clock.advance(0.049)
    assert client.pttl("clk:a") == 1
    clock.advance(0.002)
    assert client.get("clk:a") is None


def test_other_clients_keep_the_wall_clock(on_clock: Callable[[ManualClock], Any]) -> None:
    late = on_clock(ManualClock(start=time.time() + 3600))
    late.set("clk:b", b"v", px=60_000)
    with fakeredis.FakeRedis(server=embedded_server()) as wall:
        assert late.pttl("clk:b") == 60_000
        # by the wall an hour is left on top of the minute: the key was stamped an hour ahead
        assert 3_600_000 < wall.pttl("clk:b") <= 3_660_000


def test_a_managers_l2_copy_and_lease_expire_on_its_clock() -> None:
    """The runtime's own writes: an item's L2 copy counts its TTL down on the manager's (manual) clock, and a
    load's lease expires by it, so another cluster can take the key over without any wall time passing."""
    clock = ManualClock(start=1_800_000_000.0)
    writer = MwManager("w", MwConfig.from_env({}, namespace=f"clk{uuid.uuid4().hex[:8]}"), clock=clock)
    try:
        writer.set_global_item_typed("doc", "s", "1", "v", ttl_s=30)
        key = K.global_typed_key("doc", "s", "1")
        first = writer.l2.pttl(key)
        assert 0 < first <= 30_000
        clock.advance(10)
        assert writer.l2.pttl(key) == first - 10_000
        clock.advance(first / 1000)
        assert writer.l2.pttl(key) == -2
        plan = writer.begin_load("doc", "s", "2")
        assert plan.token is not None
        lease = K.lease_key(plan.key)
        held = writer.l2.pttl(lease)
        assert held > 0
        clock.advance(held / 1000 + 0.001)
        assert writer.l2.pttl(lease) == -2
        writer.finish_load(plan, None)
    finally:
        writer.close()
        mw.close_all()
