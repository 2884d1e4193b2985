"""Reads go L0 -> L1 -> L2 -> Mlt and fill the tiers above the one that answered."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal

from mw import MwManager
from mw import keys as K

Make = Callable[..., MwManager]


def test_write_then_read_from_each_tier(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    c = make_manager("c", node="other-node")
    a.set_global_item_typed("doc", "team", "7", {"title": "plan"}, ttl_s=60)

    assert a.get_item_typed("doc", "team", "7") == {"title": "plan"}
    assert a.telemetry.l0_hits == 1
    assert b.get_item_typed("doc", "team", "7") == {"title": "plan"}
    assert (b.telemetry.l0_hits, b.telemetry.l1_hits, b.telemetry.l2_hits) == (0, 1, 0), "same node: from L1"
    assert c.get_item_typed("doc", "team", "7") == {"title": "plan"}
    assert (c.telemetry.l1_hits, c.telemetry.l2_hits) == (0, 1), "another node: from L2"
    assert c.get_item_typed("doc", "team", "7") == {"title": "plan"}
    assert c.telemetry.l0_hits == 1, "the L2 hit filled L0"
    assert c.node.l1.get(K.global_typed_key("doc", "team", "7")) is not None, "the L2 hit filled the node's L1"


def test_miss_reads_mlt_once_then_serves_from_cache(make_manager: Make) -> None:
    a = make_manager("a")
    row = {
        "when": dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc),
        "id": uuid.uuid4(),
        "cost": Decimal("9.50"),
    }
    a.mlt.put_item("doc", "team", "9", row)
    q0 = a.mlt.queries
    assert a.get_item_typed("doc", "team", "9") == row
    assert a.mlt.queries == q0 + 1
    assert a.get_item_typed("doc", "team", "9") == row
    b = make_manager("b", node="n2")
    assert b.get_item_typed("doc", "team", "9") == row
    assert a.mlt.queries == q0 + 1, "later reads never reach Mlt"
    assert a.telemetry.misses == 1 and a.telemetry.mlt_loads == 1


def test_absence_confirmed_by_mlt_is_remembered_not_cached_as_a_value(make_manager: Make) -> None:
    a = make_manager("a")
    assert a.get_item_typed("doc", "team", "missing") is None
    assert a.get_item_typed("doc", "team", "missing") is None
    assert a.telemetry.mlt_loads == 1 and a.telemetry.negative_cache_hits == 1
    assert a.l2.get(K.global_typed_key("doc", "team", "missing")) is None
    a.mlt.put_item("doc", "team", "missing", "now here")
    a.set_global_item_typed("doc", "team", "missing", "now here")
    assert a.get_item_typed("doc", "team", "missing") == "now here"


def test_loader_is_called_on_miss_and_fills_tiers(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    calls: list[int] = []

    def load() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert a.get_item_typed("report", "q1", "r", loader=load, ttl_s=30) == {"n": 1}
    assert b.get_item_typed("report", "q1", "r", loader=load) == {"n": 1}
    assert len(calls) == 1
    assert 0 < a.l2.pttl(K.global_typed_key("report", "q1", "r")) <= 30_000


def test_agent_typed_item_is_read_after_the_global_one(make_manager: Make) -> None:
    a = make_manager("a")
    a.set_organ_item_typed("note", "n1", "mine")
    assert a.get_item_typed("note", "any", "n1") == "mine"
    a.set_global_item_typed("note", "any", "n1", "shared")
    assert a.get_item_typed("note", "any", "n1") == "shared"
    assert make_manager("b").get_item_typed("note", "x", "n1") is None, "organ items are private to the agent"


def test_get_item_reads_own_item_then_global(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    a.set_global_item("cfg", {"v": 1})
    assert b.get_item("cfg") == {"v": 1}
    assert b.get_item("global:item:cfg", is_global=True) == {"v": 1}
    b.set_item("scratch", [1, 2])
    assert b.get_item("scratch") == [1, 2] and a.get_item("scratch") is None
    assert b.get_item("nothing", loader=lambda: "made") == "made"
    assert a.get_item("nothing") == "made"


def test_get_many_typed_reads_the_rest_from_l2(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    for i in range(20):
        a.set_global_item_typed("doc", "s", str(i), i)
    b.get_item_typed("doc", "s", "3")
    got = b.get_many_typed("doc", "s", [str(i) for i in range(25)])
    assert got == {str(i): i for i in range(20)}
    assert b.telemetry.l2_hits == 20 and b.telemetry.l0_hits == 1 and b.telemetry.misses == 5


def test_async_reads(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    a.set_global_item_typed("doc", "s", "1", "one")
    a.mlt.put_item("doc", "s", "2", "two")

    async def main() -> tuple[object, ...]:
        async def coro_loader() -> str:
            await asyncio.sleep(0)
            return "three"

        return (
            await b.get_item_typed_async("doc", "s", "1"),
            await b.get_item_typed_async("doc", "s", "2"),
            await b.get_item_typed_async("doc", "s", "3", loader=coro_loader),
            await b.get_item_async("global:item:doc:s:1", is_global=True),
        )

    assert asyncio.run(main()) == ("one", "two", "three", "one")
    assert b.telemetry.l2_hits == 1 and b.telemetry.mlt_loads == 1 and b.telemetry.loader_calls == 1


def test_values_handed_out_are_private_copies(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b")
    original = {"items": [1, 2], "meta": {"k": "v"}}
    a.set_global_item_typed("doc", "s", "m", original)
    original["items"].append(99)
    got = a.get_item_typed("doc", "s", "m")
    assert got == {"items": [1, 2], "meta": {"k": "v"}}, "the caller's later mutation does not reach the cache"
    got["items"].append(3)
    got["meta"]["k"] = "changed"
    assert a.get_item_typed("doc", "s", "m") == {"items": [1, 2], "meta": {"k": "v"}}
    other = b.get_item_typed("doc", "s", "m")
    other["items"].clear()
    assert a.get_item_typed("doc", "s", "m")["items"] == [1, 2]
    assert b.get_item_typed("doc", "s", "m")["items"] == [1, 2]


def test_async_forms_of_every_read_and_delete(make_manager: Make) -> None:
    a, b = make_manager("a"), make_manager("b", node="n2")
    a.set_global_item_typed("doc", "s", "1", "one")
    a.set_negative_cache("doc", "s", "gone")
    b.set_item("mine", 1)
    b.set_organ_item_typed("note", "n", 2)

    async def main() -> tuple[object, ...]:
        return (
            await b.get_many_typed_async("doc", "s", ["1", "2"]),
            await b.check_negative_cache_async("doc", "s", "gone"),
            await b.delete_organ_item_async("mine"),
            await b.delete_organ_item_typed_async("note", "n"),
            await b.get_hot_items_async(),
            await b.clear_async(),
        )

    many, neg, d1, d2, _hot, cleared = asyncio.run(main())
    assert many == {"1": "one"} and neg is True and d1 is True and d2 is True and cleared == 1
    assert b.get_item("mine") is None
