"""Read-through for one agent: builds each call's :class:`mw.protocol.Read` and runs the protocol.

The manager holds one of these; the decisions are in :mod:`mw.protocol`, the I/O in :mod:`mw.drive`.
Three layers keep a miss from becoming a herd on the database: the in-process single flight, the
cluster lease with check-after-lock, and XFetch early refresh with TTL jitter. Absence is remembered
(the negative cache) only when the loader said so by returning ``None``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mw import drive
from mw import protocol as P
from mw.drive import LoadPlan
from mw.mlt import MISSING
from mw.tiers import MISS

if TYPE_CHECKING:
    from mw.core import ManagerCore

Loader = Callable[[], Any]
TTLFor = Callable[[Any], "float | None"]

__all__ = ["LoadPlan", "ReadThrough"]


class ReadThrough:
    """Stampede-protected loads on one agent's tiers (sync, asyncio and split-phase)."""

    def __init__(self, core: ManagerCore) -> None:
        # A proxy, not a reference: an agent dropped without close() is freed at once, not by a later GC pass.
        self._core: ManagerCore = weakref.proxy(core)

    def _read(
        self,
        key: str,
        ttl_s: float | None,
        ttl_for: TTLFor | None,
        *,
        fallback: Callable[[], Any] | None = None,
        xfetch: bool = False,
        loads: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> P.Read:
        now = time.monotonic
        return P.Read(
            key,
            ttl_s,
            ttl_for,
            now() + self._core.config.load_timeout_s,
            now,
            loop,
            fallback,
            xfetch,
            loads,
        )

    # --- loaders ---------------------------------------------------------------------------------
    def user_loader(self, loader: Loader) -> Loader:
        telemetry = self._core.telemetry

        def counted() -> Any:
            telemetry.loader_calls += 1
            return loader()

        return counted

    def item_loader(self, kind: str, scope: str, item_id: str, loader: Loader | None) -> Loader:
        """The caller's loader, or Mlt's item table; ``None`` means absent either way."""
        if loader is not None:
            return self.user_loader(loader)
        core = self._core

        def from_mlt() -> Any:
            core.telemetry.mlt_loads += 1
            found = core.cluster.mlt.get_item(kind, scope, item_id)
            return None if found is MISSING else found

        return from_mlt

    def item_loader_async(self, kind: str, scope: str, item_id: str, loader: Loader | None) -> Loader:
        if loader is not None:
            return self.user_loader(loader)
        core = self._core

        async def from_mlt() -> Any:
            core.telemetry.mlt_loads += 1
            found = await core.cluster.mlt.get_item_async(kind, scope, item_id)
            return None if found is MISSING else found

        return from_mlt

    # --- sync ------------------------------------------------------------------------------------
    def get(
        self,
        key: str,
        loader: Loader,
        ttl_s: float | None = None,
        ttl_for: TTLFor | None = None,
        *,
        fallback: Callable[[], Any] | None = None,
        xfetch: bool = False,
        loads: bool = True,
    ) -> P.Outcome:
        """After an L0 miss: L1 -> L2 -> (``fallback``) -> negative -> one load cluster-wide."""
        read = self._read(key, ttl_s, ttl_for, fallback=fallback, xfetch=xfetch, loads=loads)
        return drive.run_sync(self._core, P.read_through(self._core, read), read, loader)

    def get_with_l0(self, key: str, loader: Loader, ttl_s: float | None, ttl_for: TTLFor | None) -> P.Outcome:
        """The whole read, L0 included, with XFetch on hits (``get_or_load``, ``get_task``)."""
        core = self._core
        if core.enabled:
            value = core._l0.get(key, MISS)
            if value is not MISS:
                core.telemetry.l0_hits += 1
                if not P.refresh_due(core, key):
                    return P.Outcome(value, "hit")
                read = self._read(key, ttl_s, ttl_for)
                return drive.run_sync(core, P.refresh(core, read, value), read, loader)
        return self.get(key, loader, ttl_s, ttl_for, xfetch=True)

    def lead_if_free(self, key: str, loader: Loader, ttl_for: TTLFor | None) -> P.Outcome | None:
        """Load ``key`` now unless someone is loading it (prewarm); ``None`` if someone is."""
        core = self._core
        read = self._read(key, None, ttl_for)
        return drive.run_sync(core, P.lead_if_free(core, read), read, loader)

    # --- async -----------------------------------------------------------------------------------
    async def get_async(
        self,
        key: str,
        loader: Loader,
        ttl_s: float | None = None,
        ttl_for: TTLFor | None = None,
        *,
        fallback: Callable[[], Any] | None = None,
        xfetch: bool = False,
        loads: bool = True,
    ) -> P.Outcome:
        loop = asyncio.get_running_loop()
        read = self._read(key, ttl_s, ttl_for, fallback=fallback, xfetch=xfetch, loads=loads, loop=loop)
        return await drive.run_async(self._core, P.read_through(self._core, read), read, loader)

    async def get_with_l0_async(
        self, key: str, loader: Loader, ttl_s: float | None, ttl_for: TTLFor | None
    ) -> P.Outcome:
        core = self._core
        if core.enabled:
            value = core._l0.get(key, MISS)
            if value is not MISS:
                core.telemetry.l0_hits += 1
                if not P.refresh_due(core, key):
                    return P.Outcome(value, "hit")
                read = self._read(key, ttl_s, ttl_for, loop=asyncio.get_running_loop())
                return await drive.run_async(core, P.refresh(core, read, value), read, loader)
        return await self.get_async(key, loader, ttl_s, ttl_for, xfetch=True)

    # --- split phase -----------------------------------------------------------------------------
    def begin(self, key: str) -> LoadPlan:
        core = self._core
        if core.enabled:
            value = core._l0.get(key, MISS)
            if value is not MISS:
                core.telemetry.l0_hits += 1
                return LoadPlan("hit", key, value)
        read = P.Read(key, deadline=core.clock() + core.config.load_timeout_s, now=core.clock)
        return drive.begin(core, P.read_through(core, read), read)

    def poll(self, plan: LoadPlan) -> LoadPlan:
        return drive.poll(self._core, plan)

    def finish(self, plan: LoadPlan, value: Any, ttl_s: float | None, delta: float) -> bool:
        self._core.telemetry.loader_calls += 1
        return drive.finish(self._core, plan, value, ttl_s, delta)
