"""Read-through for one agent: builds each call's :class:`mw.protocol.Read` and runs the protocol.

The manager holds one of these; the decisions are in :mod:`mw.protocol`, the I/O in :mod:`mw.drive`.
Three layers keep a miss from becoming a herd on the database: the in-process single flight, the
cluster lease with check-after-lock, and XFetch early refresh with TTL jitter. Absence is remembered
(the negative cache) only when the loader said so by returning ``None``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mw import drive
from mw import protocol as P
from mw.drive import LoadPlan
from mw.mlt import MISSING
from mw.tiers import MISS

if TYPE_CHECKING:
    from mw.agent_tiers import AgentTiers

Loader = Callable[[], Any]
TTLFor = Callable[[Any], "float | None"]

__all__ = ["LoadPlan", "ReadThrough"]


class ReadThrough:
    """Stampede-protected loads on one agent's tiers (sync, asyncio and split-phase)."""

    def __init__(self, agent: AgentTiers) -> None:
        self._agent = agent

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
        clock: Callable[[], float] | None = None,
    ) -> P.Read:
        """``clock``: the deadline's clock (default ``time.monotonic``; split-phase reads use the manager's)."""
        now = time.monotonic if clock is None else clock
        return P.Read(
            key,
            ttl_s,
            ttl_for,
            now() + self._agent.config.load_timeout_s,
            now,
            loop,
            fallback,
            xfetch,
            loads,
        )

    # --- loaders ---------------------------------------------------------------------------------
    def user_loader(self, loader: Loader) -> Loader:
        telemetry = self._agent.telemetry

        def counted() -> Any:
            telemetry.loader_calls += 1
            return loader()

        return counted

    def item_loader(self, kind: str, scope: str, item_id: str, loader: Loader | None) -> Loader:
        """The caller's loader, or Mlt's item table; ``None`` means absent either way."""
        if loader is not None:
            return self.user_loader(loader)
        agent = self._agent

        def from_mlt() -> Any:
            agent.telemetry.mlt_loads += 1
            found = agent.cluster.mlt.get_item(kind, scope, item_id)
            return None if found is MISSING else found

        return from_mlt

    def item_loader_async(self, kind: str, scope: str, item_id: str, loader: Loader | None) -> Loader:
        if loader is not None:
            return self.user_loader(loader)
        agent = self._agent

        async def from_mlt() -> Any:
            agent.telemetry.mlt_loads += 1
            found = await agent.cluster.mlt.get_item_async(kind, scope, item_id)
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
        return drive.run_sync(self._agent, P.read_through(self._agent, read), read, loader)

    def with_l0(
        self,
        key: str,
        ttl_s: float | None,
        ttl_for: TTLFor | None,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] | None = None,
    ) -> tuple[Any, P.Read | None, P.Steps | None]:
        """The whole read, L0 included, with XFetch on hits (``get_or_load``, ``get_task``), for every driver.

        ``(value, None, None)`` for an L0 hit that needs no refresh (no read is built on that path); else the read
        and its steps: an early refresh of a hit XFetch wants refreshed (:func:`mw.protocol.refresh`, which keeps
        the hit if someone else is loading), or L1 -> L2 -> one load.
        """
        agent = self._agent
        if agent.enabled:
            value = agent.l0_get(key)
            if value is not MISS:
                if not P.refresh_due(agent, key):
                    return value, None, None
                read = self._read(key, ttl_s, ttl_for, loop=loop, clock=clock)
                return value, read, P.refresh(agent, read, value)
        read = self._read(key, ttl_s, ttl_for, xfetch=True, loop=loop, clock=clock)
        return MISS, read, P.read_through(agent, read)

    def get_with_l0(self, key: str, loader: Loader, ttl_s: float | None, ttl_for: TTLFor | None) -> P.Outcome:
        value, read, steps = self.with_l0(key, ttl_s, ttl_for)
        if read is None or steps is None:
            return P.Outcome(value, "hit")
        return drive.run_sync(self._agent, steps, read, loader)

    def lead_if_free(self, key: str, loader: Loader, ttl_for: TTLFor | None) -> P.Outcome | None:
        """Load ``key`` now unless someone is loading it (prewarm); ``None`` if someone is."""
        agent = self._agent
        read = self._read(key, None, ttl_for)
        return drive.run_sync(agent, P.lead_if_free(agent, read), read, loader)

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
        return await drive.run_async(self._agent, P.read_through(self._agent, read), read, loader)

    async def get_with_l0_async(
        self, key: str, loader: Loader, ttl_s: float | None, ttl_for: TTLFor | None
    ) -> P.Outcome:
        value, read, steps = self.with_l0(key, ttl_s, ttl_for, loop=asyncio.get_running_loop())
        if read is None or steps is None:
            return P.Outcome(value, "hit")
        return await drive.run_async(self._agent, steps, read, loader)

    # --- split phase -----------------------------------------------------------------------------
    def begin(self, key: str, ttl_for: TTLFor | None = None) -> LoadPlan:
        agent = self._agent
        if agent.enabled:
            value = agent.l0_get(key)
            if value is not MISS:
                return LoadPlan("hit", key, value)
        return self.begin_missed(key, ttl_for)

    def begin_missed(self, key: str, ttl_for: TTLFor | None = None) -> LoadPlan:
        """:meth:`begin` for a caller that looked at L0 itself (``MwManager.begin_load``) and missed, or whose
        caching is off: L1 -> L2 -> one load, without a second look at L0."""
        agent = self._agent
        read = P.Read(key, ttl_for=ttl_for, deadline=agent.clock() + agent.config.load_timeout_s, now=agent.clock)
        return drive.begin(agent, P.read_through(agent, read), read)

    def begin_with_l0(self, key: str, ttl_s: float | None) -> LoadPlan:
        """:meth:`with_l0` in steps: a refresh XFetch wants is a ``lead`` plan that ends ``hit`` (the caller
        loads, as for a miss); one that someone else is loading is a ``hit`` with the cached value."""
        agent = self._agent
        value, read, steps = self.with_l0(key, ttl_s, None, clock=agent.clock)
        if read is None or steps is None:
            return LoadPlan("hit", key, value)
        return drive.begin(agent, steps, read)

    def poll(self, plan: LoadPlan) -> LoadPlan:
        return drive.poll(self._agent, plan)

    def finish(self, plan: LoadPlan, value: Any, ttl_s: float | None, delta: float) -> bool:
        self._agent.telemetry.loader_calls += 1
        return drive.finish(self._agent, plan, value, ttl_s, delta)

    def fail(self, plan: LoadPlan, error: Exception) -> None:
        drive.fail(self._agent, plan, error)
