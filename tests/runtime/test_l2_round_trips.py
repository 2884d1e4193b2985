"""What a read costs in L2: the calls each read path makes (the fault seam's ``l2.*`` points) and the round trips
they are on the wire (redis-py's ``send_packed_command``, once per command or pipeline sent).

The simulator's speed is mostly these (docs/simulator.md, "Speed"), and so is a real deployment's latency: a
round trip added back to a hot path fails here, on the embedded backend and on a real Redis alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.connection

from mw import MwManager
from mw.faults import injected

Make = Callable[..., MwManager]


@dataclass
class Counted:
    points: list[str] = field(default_factory=list)
    """The ``l2.<op>`` seam points passed, in order (one per L2 call of the runtime)."""
    sent: int = 0
    """``send_packed_command`` calls: round trips to the server."""


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    counted = Counted()

    def seen(name: str, _key: str | None) -> None:
        if name.startswith("l2.") and not name.endswith(".reply"):
            counted.points.append(name)

    send: Any = redis.connection.AbstractConnection.send_packed_command  # untyped in redis-py

    def sent(self: redis.connection.AbstractConnection, *args: object, **kwargs: object) -> None:
        counted.sent += 1
        send(self, *args, **kwargs)

    with monkeypatch.context() as patch, injected(seen):
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", sent)
        yield counted


def _fleet(make_manager: Make) -> tuple[MwManager, MwManager]:
    """Two agents on two nodes (no L1 shared), no subscriber thread sending commands of its own."""
    a = make_manager("a", node="n1", pubsub=False)
    b = make_manager("b", node="n2", pubsub=False)
    a.mlt.put_item("doc", "s", "1", "v1")
    a.l2.client.ping()  # connected: a new connection's handshake is round trips too, once
    return a, b


def test_the_counters_see_every_command(make_manager: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instrument itself: one public L2 read more is one point and one round trip more."""
    a, _ = _fleet(make_manager)
    keys = ["global:item:doc:s:1", "global:item:doc:s:2"]
    nodes = 1
    if a.l2.slotted:  # a cluster: connected to each node first; a multi-key read is one pipeline per node it spans
        a.l2.mget(keys)
        nodes = len({a.l2.client.get_node_from_key(a.l2.phys(key)).name for key in keys})
    with counting(monkeypatch) as c:
        a.l2.get(keys[0])
        a.l2.mget(keys)
    assert (c.points, c.sent) == (["l2.get", "l2.mget"], 1 + nodes)


def test_local_hits_cost_no_round_trip(make_manager: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = _fleet(make_manager)
    plan = a.begin_load("doc", "s", "1")
    a.finish_load(plan, "v1")
    other = make_manager("c", node="n1", pubsub=False)  # same node: L1 has it
    with counting(monkeypatch) as c:
        assert a.begin_load("doc", "s", "1").state == "hit"  # L0
        assert other.begin_load("doc", "s", "1").state == "hit"  # L1
    assert (c.points, c.sent) == ([], 0)


def test_an_l2_hit_is_one_get(make_manager: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _fleet(make_manager)
    a.finish_load(a.begin_load("doc", "s", "1"), "v1")
    with counting(monkeypatch) as c:
        plan = b.begin_load("doc", "s", "1")
    assert (plan.state, plan.value) == ("hit", "v1")
    assert (c.points, c.sent) == (["l2.get"], 1)


def test_a_negative_hit_is_two_gets(make_manager: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """The value's GET, then (missed) the marker's: separate, because a hit, by far the most common L2 answer,
    would pay for the marker in every GET merged into one MGET (docs/simulator.md, "Speed")."""
    a, b = _fleet(make_manager)
    a.finish_load(a.begin_load("doc", "s", "nope"), None)
    with counting(monkeypatch) as c:
        assert b.begin_load("doc", "s", "nope").state == "negative"
    assert (c.points, c.sent) == (["l2.get", "l2.get"], 2)


def test_a_load_is_five_calls(make_manager: Make, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Value and marker GETs, the lease (SET NX), the check-after-lock MGET and the compare-and-set fill: one round
    trip each on a real Redis (the fill is one EVALSHA); embedded, the fill is the lease's GET then its three
    commands under the process lock (fakeredis runs Lua slowly)."""
    a, _ = _fleet(make_manager)
    with counting(monkeypatch) as c:
        plan = a.begin_load("doc", "s", "1")
        assert plan.state == "lead"
        assert a.finish_load(plan, "v1")
    assert c.points == ["l2.get", "l2.get", "l2.set_nx", "l2.mget", "l2.script"]
    assert c.sent == (4 + 4 if backend == "embedded" else 5)
