"""A failed tier is skipped and counted; a corrupt entry is a miss; nothing reaches the caller as a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import mw
from mw import ManualClock, MwConfig, MwManager
from mw import keys as K

Make = Callable[..., MwManager]


def _down_manager(make_manager: Make, organ: str, dead_l2: dict[str, Any]) -> MwManager:
    """A manager whose L2 is a port nobody listens on (``dead_l2``: on the test's topology; Mlt is the backend's)."""
    return make_manager(organ, redis_timeout_s=0.2, pubsub=False, **dead_l2)


def test_reads_fall_through_to_mlt_when_l2_is_down(backend: str, make_manager: Make, dead_l2: dict[str, Any]) -> None:
    m = _down_manager(make_manager, "a", dead_l2)
    m.mlt.put_item("doc", "s", "1", {"v": 1})
    assert m.get_item_typed("doc", "s", "1") == {"v": 1}
    assert m.telemetry.l2_errors >= 1 and m.telemetry.mlt_loads == 1
    assert m.telemetry.l2_write_failures == 0, "with L2 down the fill stays in L0/L1"
    assert m.get_item_typed("doc", "s", "1") == {"v": 1}, "L0/L1 still serve"
    assert m.telemetry.l0_hits == 1


def test_writes_that_miss_l2_are_counted_not_lost(
    backend: str, make_manager: Make, caplog, dead_l2: dict[str, Any]
) -> None:
    m = _down_manager(make_manager, "a", dead_l2)
    with caplog.at_level(logging.WARNING, logger="mw"):
        m.set_global_item_typed("doc", "s", "1", "v")
        m.set_global_item_typed("doc", "s", "2", "v")
    assert m.telemetry.l2_write_failures == 2
    assert "L2" in caplog.text
    assert m.get_item_typed("doc", "s", "1") is None, "the writer serves no value L2 never took"
    assert K.global_typed_key("doc", "s", "1") not in m.l0 and m.l1.get(K.global_typed_key("doc", "s", "1")) is None
    assert m.del_global_key("global:item:doc:s:1") is True
    assert m.telemetry.l2_write_failures == 3
    assert m.cluster.pending, "the delete is kept for replay"
    assert m.memory_metrics()["mw_tier_errors"] >= 1


def test_a_negative_mark_that_missed_l2_is_not_kept_locally(
    backend: str, make_manager: Make, dead_l2: dict[str, Any]
) -> None:
    m = _down_manager(make_manager, "a", dead_l2)
    m.set_negative_cache("doc", "s", "1", ttl_s=30)
    assert m.telemetry.l2_write_failures == 1
    assert m.check_negative_cache("doc", "s", "1") is False, "a mark only this process holds would hide a write"


def test_l2_recovers_after_the_retry_window(make_manager: Make, dead_l2: dict[str, Any]) -> None:
    m = make_manager("a", tier_retry_s=0.0, pubsub=False)
    server = m.l2._server if m.l2.embedded else None
    if server is None:
        m = make_manager("a2", tier_retry_s=0.0, pubsub=False, **dead_l2)
        m.set_global_item_typed("doc", "s", "1", "v")
        assert m.telemetry.l2_write_failures == 1
        return
    server.connected = False
    try:
        m.set_global_item_typed("doc", "s", "1", "v")
    finally:
        server.connected = True
    m.set_global_item_typed("doc", "s", "2", "v")
    assert m.telemetry.l2_write_failures == 1
    assert m.l2.get(K.global_typed_key("doc", "s", "2")) is not None


@pytest.mark.parametrize("garbage", [b"not an envelope", b"MW\x01\x00" + b"\x00" * 12 + b"{broken", b"\x80\x04K\x01."])
def test_corrupt_l2_entry_is_a_miss_with_a_counter(
    make_manager: Make, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_manager("a")
    a.mlt.put_item("doc", "s", "1", "from-mlt")
    a.l2.client.set(a.l2.phys(K.global_typed_key("doc", "s", "1")), garbage)
    with caplog.at_level(logging.WARNING, logger="mw"):
        assert a.get_item_typed("doc", "s", "1") == "from-mlt"
    assert a.telemetry.corrupt_entries == 1 and "Corrupt cache entry" in caplog.text
    assert make_manager("b", node="n2").get_item_typed("doc", "s", "1") == "from-mlt", "the reload replaced it"


def test_corrupt_l1_entry_is_dropped(make_manager: Make) -> None:
    a = make_manager("a")
    key = K.global_typed_key("doc", "s", "1")
    a.l1.set(key, b"junk", None)
    assert a.get_item_typed("doc", "s", "1") is None
    assert a.telemetry.corrupt_entries == 1 and a.l1.get(key) is None


def test_disabled_reads_mlt_every_time_and_writes_nothing(backend: str, make_manager: Make) -> None:
    m = make_manager("a", enabled=False)
    m.mlt.put_item("doc", "s", "1", "v")
    q0 = m.mlt.queries
    assert [m.get_item_typed("doc", "s", "1") for _ in range(3)] == ["v"] * 3
    assert m.mlt.queries == q0 + 3
    m.set_global_item_typed("doc", "s", "2", "w")
    m.set_item("x", 1)
    assert m.get_item("x") is None
    assert m.l2.scan_keys("*") == [] and len(m.l1) == 0 and len(m.l0) == 0
    metrics = m.memory_metrics()
    assert metrics["mw_enabled"] is False and metrics["mw_hit_ratio"] == 0.0


def test_embedded_default_needs_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MW_REDIS_URL", "MW_MLT_DSN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MW_NAMESPACE", "embedded-default")
    m = MwManager("solo", clock=ManualClock())
    try:
        m.set_global_item_typed("doc", "s", "1", "v")
        assert m.l2.embedded and m.get_item_typed("doc", "s", "1") == "v"
        assert MwConfig.from_env().redis_url is None
    finally:
        m.close()
        mw.close_all()


def test_redis_down_at_startup_costs_one_short_wait_and_l0_keeps_serving(
    make_manager: Make, caplog: pytest.LogCaptureFixture, dead_l2: dict[str, Any]
) -> None:
    import time

    m = make_manager("a", redis_timeout_s=0.1, **dead_l2)
    m.mlt.put_item("doc", "s", "1", "v")
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mw"):
        assert m.get_item_typed("doc", "s", "1") == "v", "loaded from Mlt and kept in L0/L1 (L2 is down)"
        first = time.perf_counter() - t0
        time.sleep(1.0)  # the bus retries meanwhile
        assert m.get_item_typed("doc", "s", "1") == "v"
    assert first < 1.0, f"startup waited {first:.2f} s for a dead Redis"
    assert m.telemetry.l0_hits == 1, "retries of the bus do not flush L0 while Redis stays down"
    assert caplog.text.count("subscription to") <= 1, "one warning for the loss, not one per retry"
