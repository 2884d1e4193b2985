"""Read-through with stampede protection: ``get_or_load`` and the machinery under ``get_task``.

Three layers keep a miss from becoming a herd on the database:

1. In process, :class:`mw.flight.Flight` runs one load per key for all threads and tasks.
2. Across processes, the lease of :mod:`mw.lease`: one holder loads; waiters are woken by the
   landed message and read the value from L2, or take over when the lease is released or expires.
3. Before expiry, XFetch (:mod:`mw.refresh`) lets one reader refresh a hot key early, and jitter
   spreads the expiry of keys written together.

Absence is remembered (the negative cache) only when the loader said so by returning ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from mw import keys as K
from mw.core import ManagerCore
from mw.errors import CodecError, TaskRowError
from mw.mlt import MISSING
from mw.refresh import jittered, xfetch_due
from mw.tiers import MISS as _MISS
from mw.tiers.l0 import private_copy
from mw.tiers.l2 import TierUnavailable

log = logging.getLogger("mw")

Loader = Callable[[], Any]
_typed_key = K.global_typed_key
TTLFor = Callable[[Any], float | None]

_WAIT: Any = object()
_POLL_S = 0.05
"""How often a lease waiter re-checks L2 when no landed message arrives (lost message, dead holder)."""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _Extender:
    """Keeps a lease alive while a slow loader runs: re-arms it every third of its TTL."""

    def __init__(self, manager: ManagerCore, lease_key: str, token: bytes, lease_ms: int) -> None:
        self._stop = threading.Event()
        self._args = (manager, lease_key, token, lease_ms)
        self._thread = threading.Thread(target=self._run, daemon=True, name="mw-lease-extend")
        self._thread.start()

    def _run(self) -> None:
        manager, lease_key, token, lease_ms = self._args
        while not self._stop.wait(lease_ms / 3000):
            try:
                if not manager.cluster.leases.extend(lease_key, token, lease_ms):
                    return
                manager.telemetry.lease_extensions += 1
            except TierUnavailable:
                return

    def stop(self) -> None:
        self._stop.set()


class LoadPlan(NamedTuple):
    """The outcome of :meth:`ReadThroughMixin.begin_load` (split-phase read-through).

    ``state`` is ``hit`` (``value`` is the cached value), ``negative`` (known absent), ``lead`` (this
    caller holds the lease and must load, then call ``finish_load``) or ``wait`` (another caller holds
    it: call ``poll_load`` later).
    """

    state: str
    key: str
    value: Any = None
    token: bytes | None = None


class _Fill(NamedTuple):
    target: str
    other: str
    data: bytes
    ttl_ms: int
    expire_at: float
    value: Any
    size: int


class ReadThrough(ManagerCore):
    """Stampede-protected loads on top of the core tiers."""

    # --- shared pieces --------------------------------------------------------------------------------
    def _cached(self, key: str) -> Any:
        """L0 -> L1 -> L2, filling upwards; ``_MISS`` when no tier has it."""
        value = self._local(key)
        if value is _MISS:
            value = self._shared(key, *self._l2_get(key))
        return value

    async def _cached_async(self, key: str) -> Any:
        value = await self._local_async(key)
        if value is _MISS:
            value = self._shared(key, *(await self._l2_get_async(key)))
        return value

    def _refresh_due(self, key: str) -> bool:
        delta = self._deltas.get(key)
        if not delta:
            return False
        return xfetch_due(
            self.clock(), self._l0.expire_at(key), delta, self.config.xfetch_beta, self.cluster.rng.random
        )

    def _ttl(self, value: Any, ttl_s: float | None, ttl_for: TTLFor | None) -> float:
        if ttl_for is not None:
            ttl = ttl_for(value)
            return self.config.l2_ttl_s if ttl is None else ttl
        base = self.config.l2_ttl_s if ttl_s is None else ttl_s
        return jittered(base, self.config.ttl_jitter, self.cluster.rng.random)

    def _negative_data(self, key: str) -> tuple[str, bytes, float]:
        nkey = K.negative_key(key)
        ttl = self.config.negative_ttl_s
        return nkey, self.cluster.codec.encode(True, self.clock() + ttl, nkey), ttl

    def _fill_for(
        self, key: str, value: Any, ttl_s: float | None, ttl_for: TTLFor | None, delta: float
    ) -> _Fill | None:
        """What a lease holder writes for a loaded value: the value, the negative marker, or nothing.

        A value the cache cannot hold (too large, a type the codec refuses, a row without a usable TTL)
        is still returned to the callers; it is just not cached, and that is counted and logged.
        """
        if value is None:
            if not self.config.negative_cache:
                return None
            nkey, ndata, nttl = self._negative_data(key)
            return _Fill(nkey, key, ndata, _ms(nttl), 0.0, None, 0)
        try:
            ttl = self._ttl(value, ttl_s, ttl_for)
            if ttl <= 0:
                return None
            expire_at = self.clock() + ttl
            data, size = self.cluster.codec.encode_sized(value, expire_at, key, delta)
        except (CodecError, TaskRowError) as exc:
            self.telemetry.uncacheable += 1
            log.warning("Loaded value for %s is returned but not cached: %s", key, exc)
            return None
        return _Fill(key, K.negative_key(key), data, _ms(ttl), expire_at, value, size)

    def _after_fill(self, key: str, filled: bool, fill: _Fill, delta: float, gen: int) -> None:
        """After the compare-and-set in L2: keep local copies unless something was dropped meanwhile."""
        if not filled:
            self.telemetry.stale_sets_prevented += 1
            log.info("Fill of %s refused: invalidated while loading (stale set prevented)", key)
            return
        cluster = self.cluster
        if fill.value is None:
            cluster.drop_local([fill.target])  # a stale negative copy in this node's L1 goes too
            return
        if cluster.generation != gen:
            return
        self.node.l1.set(key, fill.data, fill.expire_at)
        self._l0.set(key, fill.value, fill.expire_at, fill.size)
        self._remember_delta(key, delta)
        if cluster.generation != gen:
            self._unfill(key)

    # --- loaders -------------------------------------------------------------------------------------
    def _user_loader(self, loader: Loader) -> Loader:
        telemetry = self.telemetry

        def counted() -> Any:
            telemetry.loader_calls += 1
            return loader()

        return counted

    def _item_loader(self, kind: str, scope: str, item_id: str, loader: Loader | None) -> Loader:
        """The caller's loader, or Mlt's item table; ``None`` means absent either way."""
        if loader is not None:
            return self._user_loader(loader)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        def from_mlt() -> Any:
            telemetry.mlt_loads += 1
            found = mlt.get_item(kind, scope, item_id)
            return None if found is MISSING else found

        return from_mlt

    def _item_loader_async(self, kind: str, scope: str, item_id: str, loader: Loader | None) -> Loader:
        if loader is not None:
            return self._user_loader(loader)
        mlt, telemetry = self.cluster.mlt, self.telemetry

        async def from_mlt() -> Any:
            telemetry.mlt_loads += 1
            found = await mlt.get_item_async(kind, scope, item_id)
            return None if found is MISSING else found

        return from_mlt

    # --- public reads ----------------------------------------------------------------------------------
    def get_item_typed(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        """The typed global item, else this agent's typed item, else Mlt (or ``loader``); ``None`` if absent.

        A miss loads once cluster-wide, like :meth:`get_or_load`.
        """
        key = _typed_key(kind, scope, item_id)
        self._hot_add(key)
        if self.enabled:
            value = self._l0.get(key, _MISS)
            if value is not _MISS:
                self.telemetry.l0_hits += 1
                return value
            value = self._typed_after_l0(key, kind, item_id)
            if value is not _MISS:
                return value
        return self._miss_load(key, self._item_loader(kind, scope, item_id, loader), ttl_s)[0]

    async def get_item_typed_async(
        self, kind: str, scope: str, item_id: str, loader: Loader | None = None, ttl_s: float | None = None
    ) -> Any:
        key = _typed_key(kind, scope, item_id)
        self._hot_add(key)
        if self.enabled:
            value = await self._typed_lookup_async(key, kind, item_id)
            if value is not _MISS:
                return value
        load = self._item_loader_async(kind, scope, item_id, loader)
        return (await self._miss_load_async(key, load, ttl_s))[0]

    def get_item(self, item_id: str, is_global: bool = False, loader: Loader | None = None) -> Any:
        """This agent's own item (``set_item``) first, then the global item through L0 -> L1 -> L2.

        ``is_global=True``: ``item_id`` is a full global key, used as given. With a ``loader``, a miss
        loads once cluster-wide and fills the tiers; without one a miss returns ``None``.
        """
        key = K.global_key(item_id, is_global=is_global)
        self._hot_add(key)
        if self.enabled:
            value = self._untyped_lookup(key, item_id, is_global)
            if value is not _MISS:
                return value
        if loader is None:
            self._missed(key)
            return None
        return self._miss_load(key, self._user_loader(loader), None)[0]

    async def get_item_async(self, item_id: str, is_global: bool = False, loader: Loader | None = None) -> Any:
        key = K.global_key(item_id, is_global=is_global)
        self._hot_add(key)
        if self.enabled:
            value = await self._untyped_lookup_async(key, item_id, is_global)
            if value is not _MISS:
                return value
        if loader is None:
            self._missed(key)
            return None
        return (await self._miss_load_async(key, self._user_loader(loader), None))[0]

    # --- sync ------------------------------------------------------------------------------------------
    def _read_through(
        self, key: str, load: Loader, ttl_s: float | None = None, ttl_for: TTLFor | None = None
    ) -> tuple[Any, bool]:
        """``(value, hit)``: the cached value, else one load shared by every caller in the cluster."""
        self._hot_add(key)
        if self.enabled:
            value = self._cached(key)
            if value is not _MISS:
                if self._refresh_due(key) and not self._flight.in_flight(key):
                    fresh = self._refresh_early(key, load, ttl_s, ttl_for)
                    if fresh is not _MISS:
                        return fresh, True
                return value, True
        return self._miss_load(key, load, ttl_s, ttl_for)

    def _miss_load(
        self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None = None
    ) -> tuple[Any, bool]:
        """Every tier missed: the negative cache, then one protected load. ``(value, hit)``."""
        if not self.enabled:
            self._missed(key)
            return load(), False
        if self.config.negative_cache and self._negative_hit(key):
            return None, True
        self._missed(key)
        if not self.config.stampede_protection:
            return self._load_unleased(key, load, ttl_s, ttl_for), False
        value = self._flight.run(
            key,
            lambda: self._load_once(key, load, ttl_s, ttl_for),
            alone=lambda: self._load_unleased(key, load, ttl_s, ttl_for, fill="none"),
        )
        return private_copy(value), False  # callers that shared one load must not share one object

    def _refresh_early(self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None) -> Any:
        """XFetch: refresh now if this caller can lead without waiting (no load in flight here, the lease
        free in the cluster); otherwise keep serving the cached value."""

        def refresh() -> Any:
            lkey = K.lease_key(key)
            try:
                token = self.cluster.leases.acquire(lkey, _ms(self.config.lease_ttl_s))
            except TierUnavailable:
                self.telemetry.l2_errors += 1
                return _MISS
            if token is None:
                return _MISS
            self.telemetry.early_refreshes += 1
            return self._hold(key, lkey, token, load, ttl_s, ttl_for)

        led, value = self._flight.run_if_idle(key, refresh)
        return _MISS if not led or value is _MISS else private_copy(value)

    def _load_once(self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None) -> Any:
        """The process's one load of ``key``: hold the lease, or wait for the holder's value."""
        lkey = K.lease_key(key)
        lease_ms = _ms(self.config.lease_ttl_s)
        deadline = time.monotonic() + max(3 * self.config.lease_ttl_s, 5.0)
        while True:
            try:
                token = self.cluster.leases.acquire(lkey, lease_ms)
            except TierUnavailable:
                self.telemetry.l2_errors += 1
                return self._load_unleased(key, load, ttl_s, ttl_for, fill="local")
            if token is not None:
                return self._hold(key, lkey, token, load, ttl_s, ttl_for)
            self.telemetry.lease_waits += 1
            value = self._await_landing(key, lkey, deadline)
            if value is not _MISS:
                return value
            if time.monotonic() > deadline:
                log.warning("Gave up waiting for the lease on %s; loading without it", key)
                return self._load_unleased(key, load, ttl_s, ttl_for, fill="none")

    def _await_landing(self, key: str, lkey: str, deadline: float) -> Any:
        """Wait for the holder: the value (or ``None`` if absent), or ``_MISS`` when the lease is free."""
        bus = self.cluster.bus
        event = threading.Event()
        unregister = bus.waiters.register(key, event.set) if bus is not None else (lambda: None)
        nkey = K.negative_key(key)
        try:
            while True:
                try:
                    gen = self.cluster.generation
                    found = self.cluster.l2.mget([key, nkey, lkey])
                except TierUnavailable:
                    self.telemetry.l2_errors += 1
                    return _MISS
                outcome = self._landing(key, found, gen, deadline)
                if outcome is not _WAIT:
                    return outcome
                event.wait(_POLL_S)
                event.clear()
        finally:
            unregister()

    def _landing(self, key: str, found: list[bytes | None], gen: int, deadline: float) -> Any:
        """One look at ``[value, negative marker, lease holder]``: the value, ``None`` (absent), ``_MISS``
        (the lease is free, or the wait is over: take the lease) or ``_WAIT``."""
        data, neg, holder = found
        if data is not None:
            value = self._shared(key, data, gen)
            if value is not _MISS:
                return value
        if self._is_negative(neg):
            return None
        if holder is None or time.monotonic() > deadline:
            return _MISS
        return _WAIT

    def _hold(
        self, key: str, lkey: str, token: bytes, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None
    ) -> Any:
        leases = self.cluster.leases
        extender = _Extender(self, lkey, token, _ms(self.config.lease_ttl_s))
        filled = False
        try:
            started = time.perf_counter()
            try:
                value = load()
            finally:
                extender.stop()
            delta = time.perf_counter() - started
            fill = self._fill_for(key, value, ttl_s, ttl_for, delta)
            if fill is not None:
                gen = self.cluster.generation
                try:
                    filled = leases.fill(lkey, token, fill.target, fill.other, fill.data, fill.ttl_ms, key)
                except TierUnavailable:
                    self._fill_failed()
                    return value
                self._after_fill(key, filled, fill, delta, gen)
            return value
        finally:
            if not filled:
                self._release(lkey, token)

    def _fill_failed(self) -> None:
        self.telemetry.l2_errors += 1
        self.telemetry.l2_write_failures += 1

    def _release(self, lkey: str, token: bytes) -> None:
        try:
            self.cluster.leases.release(lkey, token)
        except TierUnavailable:
            self.telemetry.l2_errors += 1

    def _load_unleased(
        self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None, *, fill: str = "all"
    ) -> Any:
        """A load without the lease, which cannot refuse a stale fill in L2. ``fill``: ``"all"`` only with
        stampede protection switched off (that risk was chosen); ``"local"`` when L2 is unreachable (L0 and
        L1, kept only if nothing was dropped during the load); ``"none"`` when the holder never answered or
        the caller cannot wait: the value is only returned."""
        gen = self.cluster.generation
        value = load()
        self._fill_unleased(key, value, ttl_s, ttl_for, fill, gen)
        return value

    def _fill_unleased(
        self, key: str, value: Any, ttl_s: float | None, ttl_for: TTLFor | None, fill: str, gen: int
    ) -> None:
        if value is None or fill == "none":
            return
        try:
            ttl = self._ttl(value, ttl_s, ttl_for)
            if ttl <= 0:
                return
            if fill == "all":
                self._write(key, value, ttl, broadcast=False)
                return
            expire_at = self.clock() + ttl
            data, size = self.cluster.codec.encode_sized(value, expire_at, key)
            self._after_fill(key, True, _Fill(key, K.negative_key(key), data, 0, expire_at, value, size), 0.0, gen)
        except (CodecError, TaskRowError) as exc:
            self.telemetry.uncacheable += 1
            log.warning("Loaded value for %s is returned but not cached: %s", key, exc)

    # --- split phase ---------------------------------------------------------------------------------
    def begin_load(self, kind: str, scope: str, item_id: str) -> LoadPlan:
        """Read-through in steps, for schedulers that cannot block (SimPy, gevent, a job queue).

        Same protocol as ``get_or_load`` (lease, negative cache), but never waits: a ``wait`` plan is
        re-checked with :meth:`poll_load`, a ``lead`` plan is completed with :meth:`finish_load`.
        """
        key = K.global_typed_key(kind, scope, item_id)
        self._hot_add(key)
        if not self.enabled:
            self._missed(key)
            return LoadPlan("lead", key)
        value = self._local(key)
        if value is _MISS:
            value, negative = self._value_or_negative(key)
            if negative:
                return LoadPlan("negative", key)
        if value is not _MISS:
            return LoadPlan("hit", key, value)
        self._missed(key)
        return self._try_lead(key)

    def _value_or_negative(self, key: str) -> tuple[Any, bool]:
        """After L0/L1 missed: the value from L2, else whether the item is known absent. Two GETs, not one
        MGET: L2 hits outnumber misses, and a hit then costs one key."""
        value = self._shared(key, *self._l2_get(key))
        if value is _MISS and self.config.negative_cache and self._negative_hit(key):
            return _MISS, True
        return value, False

    def _try_lead(self, key: str) -> LoadPlan:
        if not self.config.stampede_protection:
            return LoadPlan("lead", key)
        try:
            token = self.cluster.leases.acquire(K.lease_key(key), _ms(self.config.lease_ttl_s))
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return LoadPlan("lead", key)
        if token is None:
            self.telemetry.lease_waits += 1
            return LoadPlan("wait", key)
        return LoadPlan("lead", key, token=token)

    def poll_load(self, plan: LoadPlan) -> LoadPlan:
        """Re-check a ``wait`` plan: ``hit``/``negative`` once the holder filled, ``lead`` if the lease freed up."""
        key = plan.key
        try:
            gen = self.cluster.generation
            data, neg, holder = self.cluster.l2.mget([key, K.negative_key(key), K.lease_key(key)])
        except TierUnavailable:
            self.telemetry.l2_errors += 1
            return LoadPlan("lead", key)
        if data is not None:
            value = self._shared(key, data, gen)
            if value is not _MISS:
                return LoadPlan("hit", key, value)
        if self._is_negative(neg):
            return LoadPlan("negative", key)
        return self._try_lead(key) if holder is None else plan

    def finish_load(self, plan: LoadPlan, value: Any, ttl_s: float | None = None, delta: float = 0.0) -> bool:
        """Complete a ``lead`` plan with the loaded value (``None``: absent). True if the tiers took it."""
        self.telemetry.loader_calls += 1
        key = plan.key
        if not self.enabled:
            return False
        if plan.token is None:
            if value is None:
                return False
            self._write(key, value, self._ttl(value, ttl_s, None), broadcast=False)
            return True
        lkey = K.lease_key(key)
        filled = False
        try:
            fill = self._fill_for(key, value, ttl_s, None, delta)
            if fill is None:
                return False
            gen = self.cluster.generation
            try:
                filled = self.cluster.leases.fill(
                    lkey, plan.token, fill.target, fill.other, fill.data, fill.ttl_ms, key
                )
            except TierUnavailable:
                self._fill_failed()
                return False
            self._after_fill(key, filled, fill, delta, gen)
            return filled
        finally:
            if not filled:
                self._release(lkey, plan.token)

    # --- async -----------------------------------------------------------------------------------------
    async def _read_through_async(
        self, key: str, load: Loader, ttl_s: float | None = None, ttl_for: TTLFor | None = None
    ) -> tuple[Any, bool]:
        self._hot_add(key)
        if self.enabled:
            value = await self._cached_async(key)
            if value is not _MISS:
                return value, True
        return await self._miss_load_async(key, load, ttl_s, ttl_for)

    async def _miss_load_async(
        self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None = None
    ) -> tuple[Any, bool]:
        if not self.enabled:
            self._missed(key)
            return await self._call_async(load), False
        if self.config.negative_cache and await self._negative_hit_async(key):
            return None, True
        self._missed(key)
        if not self.config.stampede_protection:
            return await self._load_unleased_async(key, load, ttl_s, ttl_for), False
        value = await self._flight.run_async(key, lambda: self._load_once_async(key, load, ttl_s, ttl_for))
        return private_copy(value), False

    async def _call_async(self, load: Loader) -> Any:
        result = load()
        return await result if inspect.isawaitable(result) else result

    async def _load_once_async(self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None) -> Any:
        lkey = K.lease_key(key)
        lease_ms = _ms(self.config.lease_ttl_s)
        deadline = time.monotonic() + max(3 * self.config.lease_ttl_s, 5.0)
        leases = self.cluster.leases
        while True:
            try:
                token = await leases.acquire_async(lkey, lease_ms)
            except TierUnavailable:
                self.telemetry.l2_errors += 1
                return await self._load_unleased_async(key, load, ttl_s, ttl_for, fill="local")
            if token is not None:
                return await self._hold_async(key, lkey, token, load, ttl_s, ttl_for)
            self.telemetry.lease_waits += 1
            value = await self._await_landing_async(key, lkey, deadline)
            if value is not _MISS:
                return value
            if time.monotonic() > deadline:
                return await self._load_unleased_async(key, load, ttl_s, ttl_for, fill="none")

    async def _await_landing_async(self, key: str, lkey: str, deadline: float) -> Any:
        bus = self.cluster.bus
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        unregister = bus.waiters.register(key, wake) if bus is not None else None
        nkey = K.negative_key(key)
        try:
            while True:
                try:
                    gen = self.cluster.generation
                    found = await self.cluster.l2.mget_async([key, nkey, lkey])
                except TierUnavailable:
                    self.telemetry.l2_errors += 1
                    return _MISS
                outcome = self._landing(key, found, gen, deadline)
                if outcome is not _WAIT:
                    return outcome
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), _POLL_S)
                woken.clear()
        finally:
            if unregister is not None:
                unregister()

    async def _hold_async(
        self, key: str, lkey: str, token: bytes, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None
    ) -> Any:
        leases = self.cluster.leases
        extender = _Extender(self, lkey, token, _ms(self.config.lease_ttl_s))
        filled = False
        try:
            started = time.perf_counter()
            try:
                value = await self._call_async(load)
            finally:
                extender.stop()
            delta = time.perf_counter() - started
            fill = self._fill_for(key, value, ttl_s, ttl_for, delta)
            if fill is not None:
                gen = self.cluster.generation
                try:
                    filled = await leases.fill_async(lkey, token, fill.target, fill.other, fill.data, fill.ttl_ms, key)
                except TierUnavailable:
                    self._fill_failed()
                    return value
                self._after_fill(key, filled, fill, delta, gen)
            return value
        finally:
            if not filled:
                try:
                    await leases.release_async(lkey, token)
                except TierUnavailable:
                    self.telemetry.l2_errors += 1

    async def _load_unleased_async(
        self, key: str, load: Loader, ttl_s: float | None, ttl_for: TTLFor | None, *, fill: str = "all"
    ) -> Any:
        gen = self.cluster.generation
        value = await self._call_async(load)
        self._fill_unleased(key, value, ttl_s, ttl_for, fill, gen)
        return value
