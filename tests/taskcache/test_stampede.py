"""Stampede protection: one load per key, in process (threads, asyncio) and across processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mw import MwConfig, MwManager
from mw import keys as K

Make = Callable[..., MwManager]
WORKER = Path(__file__).with_name("herd_worker.py")


class CountingLoader:
    def __init__(self, value: object = "loaded", sleep_s: float = 0.1, error: Exception | None = None) -> None:
        self.value, self.sleep_s, self.error = value, sleep_s, error
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> object:
        with self._lock:
            self.calls += 1
        time.sleep(self.sleep_s)
        if self.error is not None:
            raise self.error
        return self.value


def test_threads_on_many_agents_run_the_loader_once(make_manager: Make) -> None:
    agents = [make_manager(f"a{i}", node=f"n{i % 2}") for i in range(4)]
    load = CountingLoader({"v": 1}, sleep_s=0.2)
    got: list[object] = []
    barrier = threading.Barrier(32)

    def call(m: MwManager) -> None:
        barrier.wait()
        got.append(m.get_or_load("doc", "herd", "1", loader=load))

    threads = [threading.Thread(target=call, args=(agents[i % 4],)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1 and got == [{"v": 1}] * 32


def test_asyncio_herd_with_a_cancelled_waiter(make_manager: Make) -> None:
    m = make_manager("a")
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return "value"

    async def main() -> list[object]:
        tasks = [asyncio.create_task(m.get_or_load_async("doc", "herd", "2", loader=load)) for _ in range(20)]
        while m.cluster.flight.joined < 19 or not calls:  # every caller is waiting on the one load
            await asyncio.sleep(0.005)
        tasks[0].cancel()  # the caller that started the load goes away
        tasks[7].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert calls == 1
    assert isinstance(results[0], asyncio.CancelledError) and isinstance(results[7], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i not in (0, 7)] == ["value"] * 18
    assert m.get_or_load("doc", "herd", "2", loader=load) == "value" and calls == 1


def test_loader_error_reaches_every_waiter_and_is_not_cached(make_manager: Make) -> None:
    m = make_manager("a")
    failing = CountingLoader(sleep_s=0.15, error=RuntimeError("db down"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            m.get_or_load("doc", "herd", "3", loader=failing)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failing.calls == 1 and len(errors) == 8
    assert m.l2.get(K.lease_key(K.global_typed_key("doc", "herd", "3"))) is None, "the lease was released"
    assert m.get_or_load("doc", "herd", "3", loader=lambda: "ok") == "ok", "the error was not cached"


def test_stale_set_is_refused_after_an_invalidation(make_manager: Make) -> None:
    """A value loaded before an invalidation must not be written after it."""
    a, b = make_manager("a"), make_manager("b", node="n2")
    tid = "stale-1"
    a.mlt.put_task({"id": tid, "status": "running"})
    started = threading.Event()
    old_row = a.mlt.get_task(tid)

    def slow_old_row() -> object:
        started.set()
        time.sleep(0.3)
        return old_row

    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(a.get_or_load("task", "by_id", tid, loader=slow_old_row)))
    t.start()
    started.wait(5)
    b.update_task_status(tid, "completed")
    t.join()
    assert out == [old_row], "the caller still gets what it loaded"
    assert a.telemetry.stale_sets_prevented == 1
    assert a.l2.get(K.task_key(tid)) is None and K.task_key(tid) not in a.l0
    assert b.get_task(tid)["status"] == "completed"


def test_lease_waiters_are_woken_not_polled(make_manager: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents of separate clusters (as separate processes would be) wait on the holder's lease.

    The fallback poll is stretched to 5 s here: only the landed message can end a wait in time.
    """
    import mw.drive
    import mw.protocol

    monkeypatch.setattr(mw.protocol, "POLL_S", 5.0)
    monkeypatch.setattr(mw.drive, "POLL_S", 5.0)
    clusters = [make_manager(f"c{i}", l1_max_items=1000 + i) for i in range(3)]
    assert len({id(m.cluster) for m in clusters}) == 3
    load = CountingLoader("v", sleep_s=0.3)
    lat: list[float] = []
    barrier = threading.Barrier(3)

    def call(m: MwManager) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        assert m.get_or_load("doc", "herd", "4", loader=load) == "v"
        lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=call, args=(m,)) for m in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1
    woken = sum(m.cluster.bus.waiters.woken for m in clusters if m.cluster.bus is not None)
    assert woken >= 1, "no waiter was woken by the landed message"
    assert max(lat) < 5.0, "a waiter sat out the whole 5 s poll: the landed message did not end its wait"


def test_slow_loader_extends_its_lease(make_manager: Make) -> None:
    a = make_manager("a", lease_ttl_s=0.3)
    b = make_manager("b", lease_ttl_s=0.3, l1_max_items=999)
    load = CountingLoader("slow", sleep_s=1.0)
    t = threading.Thread(target=lambda: a.get_or_load("doc", "herd", "5", loader=load))
    t.start()
    time.sleep(0.6)
    assert b.l2.get(K.lease_key(K.global_typed_key("doc", "herd", "5"))) is not None, "still held past its TTL"
    assert b.get_or_load("doc", "herd", "5", loader=load) == "slow"
    t.join()
    assert load.calls == 1 and a.telemetry.lease_extensions >= 1


def test_dead_holder_lease_expires_and_a_waiter_takes_over(make_manager: Make) -> None:
    a = make_manager("a", real_clock=True, lease_ttl_s=0.3)  # the lease lapses in wall time, as it is measured
    key = K.global_typed_key("doc", "herd", "6")
    assert a.try_set_inflight(key, 0.3), "a holder that will never fill"
    t0 = time.perf_counter()
    assert a.get_or_load("doc", "herd", "6", loader=lambda: "taken over") == "taken over"
    assert 0.2 < time.perf_counter() - t0 < a.config.load_timeout_s, "taken over once the lease expired"


def _count_calls(mlt_dsn: str) -> int:
    from mw.mlt import open_store

    store = open_store(mlt_dsn)
    try:
        if mlt_dsn.startswith("sqlite"):
            with store._lock:  # type: ignore[attr-defined]
                return int(store._conn.execute("SELECT count(*) FROM mw_items WHERE kind='herd'").fetchone()[0])  # type: ignore[attr-defined]
        with store._pool.connection() as conn:  # type: ignore[attr-defined]
            return int(conn.execute("SELECT count(*) FROM mw_items WHERE kind='herd'").fetchone()[0])
    finally:
        store.close()


def test_four_processes_sixteen_callers_one_loader_call(
    real_l2_settings: dict[str, Any], mw_namespace: str, mw_postgres_dsn: str
) -> None:
    """Real Redis + PostgreSQL only: separate processes cannot share the in-process fake Redis."""
    base_config = MwConfig(mlt_dsn=str(mw_postgres_dsn), namespace=mw_namespace, **real_l2_settings)
    load_s = 0.2
    start_at = time.time() + 3.0
    procs = []
    for i in range(4):
        spec = {
            "l2": real_l2_settings,
            "mlt_dsn": base_config.mlt_dsn,
            "namespace": base_config.namespace,
            "proc": i,
            "callers": 16,
            "load_s": load_s,
            "start_at": start_at,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
        )
    outputs, logs = [], []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
        logs.append(err)
    values = [v for o in outputs for v in o["values"]]
    latencies = [lat for o in outputs for lat in o["latencies"]]
    why = "\n".join(f"process {n}: {log.strip()}" for n, log in enumerate(logs) if log.strip())
    assert len(values) == 64 and len({json.dumps(v, sort_keys=True) for v in values}) == 1, why
    assert _count_calls(mw_postgres_dsn) == 1, f"exactly one loader call across 4 processes x 16 callers\n{why}"
    # No wall-clock figure (wake-ups are test_lease_waiters_are_woken_not_polled's): no caller came near the
    # load deadline (a hang).
    assert max(latencies) < MwConfig().load_timeout_s, f"a caller hung: {sorted(latencies)[-3:]}"


def test_embedded_sqlite_file_store_counts_across_connections() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dsn = f"sqlite:///{tmp}/m.db"
        from mw.mlt import open_store

        s = open_store(dsn)
        s.put_item("herd", "calls", "x", 1)
        s.close()
        assert _count_calls(dsn) == 1


def test_a_write_during_a_load_wins_over_the_load(make_manager: Make, clock) -> None:
    """A load that read v1 before a write of v2 must not put v1 back (found by the simulator)."""
    a, b = make_manager("a"), make_manager("b", node="n2")
    plan = a.begin_load("doc", "s", "x")
    assert plan.state == "lead"
    b.set_global_item_typed("doc", "s", "x", "v2")
    assert a.finish_load(plan, "v1") is False and a.telemetry.stale_sets_prevented == 1
    assert make_manager("c", node="n3").get_item_typed("doc", "s", "x") == "v2"
    assert a.get_item_typed("doc", "s", "x") == "v2"
