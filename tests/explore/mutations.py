"""The defects of issue 9's "Why" (and the explorer's own finds), put back one at a time.

Each mutation patches a public function or method of ``mw`` (never the checks) for the duration of a
``with`` block. The explorer must find each: ``tests/explore/test_explore.py`` searches the seeds for
the first that fails under it. Defects the explorer cannot see (they are not in its model: Redis
error classification, connection leaks, PostgreSQL hangs, bounds, bad input) are named in
:data:`FOUND_ELSEWHERE` with the test that finds them instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterator
from typing import Any
from unittest import mock

from mw import protocol as P
from mw.errors import LoadTimeout
from mw.faults import INJECTORS
from mw.flight import Entry, Flight
from mw.lease import Leases
from mw.tiers import MISS
from mw.tiers.l2 import RedisTier

Mutation = Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def no_check_after_lock() -> Iterator[None]:
    """A caller that takes the lease loads without reading L2 again (loads ran twice)."""

    def recheck(core: Any, key: str, lkey: str, token: bytes) -> Generator[Any, Any, Any]:
        return MISS
        yield  # a generator, as the original

    with mock.patch.object(P, "recheck", recheck):
        yield


@contextlib.contextmanager
def waiters_give_up() -> Iterator[None]:
    """Waiters give up after ``max(3 x lease TTL, 5 s)`` and load, though the holder is alive."""
    original = P.wait_for_holder

    def wait_for_holder(core: Any, read: P.Read, lkey: str, nkey: str) -> Generator[Any, Any, Any]:
        fixed = max(3 * core.config.lease_ttl_s, 5.0)
        short = dataclasses.replace(read, deadline=min(read.deadline, read.now() + fixed))
        try:
            return (yield from original(core, short, lkey, nkey))
        except LoadTimeout:
            loaded = yield P.Load(read.key, None, None)
            return loaded.value

    with mock.patch.object(P, "wait_for_holder", wait_for_holder):
        yield


@contextlib.contextmanager
def flight_not_abandoned() -> Iterator[None]:
    """A leader that is cancelled (or whose loop closed) leaves its flight entry unresolved."""
    with mock.patch.object(Flight, "abandon", lambda self, entry: None):
        yield


@contextlib.contextmanager
def lease_not_extended() -> Iterator[None]:
    """The holder's lease is not re-armed while a slow loader runs (the extension does nothing)."""
    with mock.patch.object(Leases, "extend", lambda self, lease_key, token, ttl_ms: True):
        yield


@contextlib.contextmanager
def cancellation_reaches_followers() -> Iterator[None]:
    """A cancelled leader hands its ``CancelledError`` (a BaseException) to its followers."""

    def abandon(self: Flight, entry: Entry) -> None:
        if not entry.future.done():
            entry.future.set_exception(asyncio.CancelledError())
            self.forget([entry.key])

    with mock.patch.object(Flight, "abandon", abandon):
        yield


@contextlib.contextmanager
def flight_survives_drops() -> Iterator[None]:
    """F2: a local drop or flush leaves the loads in flight joinable (their values predate it)."""
    with (
        mock.patch.object(Flight, "forget", lambda self, keys: 0),
        mock.patch.object(Flight, "forget_all", lambda self: 0),
    ):
        yield


@contextlib.contextmanager
def delete_keeps_negative_marker() -> Iterator[None]:
    """F3: a delete leaves the key's negative-cache marker in L2."""
    original = RedisTier.delete

    def delete(self: RedisTier, keys: Any, publish: Any = None, also: Any = ()) -> int:
        return original(self, keys, publish, [k for k in also if not k.startswith("mw:neg:")])

    with mock.patch.object(RedisTier, "delete", delete):
        yield


@contextlib.contextmanager
def lease_less_load_in_except() -> Iterator[None]:
    """F4: the load without the lease runs inside the acquire's except clause (a dropped plan is not
    freed until a garbage collection: its followers wait until their deadline)."""
    L2_FAULTS, Acquire, Load, Outcome = P.L2_FAULTS, P.Acquire, P.Load, P.Outcome

    def leased(core: Any, read: P.Read) -> Generator[Any, Any, Any]:
        from mw import keys as K

        key, telemetry = read.key, core.telemetry
        lkey, nkey = K.lease_key(key), K.negative_key(key)
        ms = P.lease_ms(core.config.lease_ttl_s)
        while True:
            if INJECTORS:
                yield P.Step("acquire", key)
            try:
                token = yield Acquire(lkey, ms)
            except L2_FAULTS:
                telemetry.l2_errors += 1
                gen = core.cluster.generation
                loaded = yield Load(key, None, None)
                return Outcome(loaded.value, "loaded", P.fill_unleased(core, read, loaded, "local", gen))
            if token is not None:
                found = yield from P.recheck(core, key, lkey, token)
                if found is not MISS:
                    return Outcome(found, "shared")
                return (yield from P.hold(core, read, lkey, token))
            telemetry.lease_waits += 1
            found = yield from P.wait_for_holder(core, read, lkey, nkey)
            if found is not MISS:
                return Outcome(found, "shared")

    with mock.patch.object(P, "leased", leased):
        yield


MUTATIONS: dict[str, Mutation] = {
    "no check-after-lock": no_check_after_lock,
    "waiters give up after a fixed time": waiters_give_up,
    "flight not abandoned on cancel": flight_not_abandoned,
    "lease not extended": lease_not_extended,
    "a follower receives the leader's CancelledError": cancellation_reaches_followers,
    "F2: flight survives a local drop or flush": flight_survives_drops,
    "F3: a delete keeps the negative marker": delete_keeps_negative_marker,
    "F4: lease-less load inside the except clause": lease_less_load_in_except,
}

FOUND_ELSEWHERE: dict[str, str] = {
    "F5: a holder whose loop closed keeps extending its lease (the explorer drives its own extender, "
    "so it found this while that extender behaved as mw.drive's did)": (
        "tests/explore/test_regressions.py::test_f5_a_holder_whose_loop_closed_stops_extending_its_lease"
    ),
    "a Redis command error taken for 'Redis down'": (
        "tests/runtime/test_l2_faults.py::test_manager_wrongtype_read_leaves_l2_up_for_the_next_delete"
    ),
    "a write that could not reach L2 splits the cluster": (
        "tests/runtime/test_outage_writes.py::"
        "test_a_write_and_a_delete_made_during_an_outage_leave_no_process_serving_stale"
    ),
    "one Redis connection leaks per event loop": (
        "tests/runtime/test_l2_faults.py::test_four_hundred_event_loops_leave_no_clients_sockets_or_warnings"
    ),
    "a hung PostgreSQL hangs callers": (
        "tests/runtime/test_mlt_faults.py::test_a_stopped_server_ends_each_call_within_the_deadline"
    ),
    "unbounded tiers and per-key state": (
        "tests/runtime/test_bounds.py::test_200k_distinct_keys_leave_l0_l1_and_the_holder_index_bounded"
    ),
    "the bus resubscribes late after an outage": (
        "tests/runtime/test_outage_writes.py::test_the_bus_resubscribes_as_soon_as_commands_work_again"
    ),
}
