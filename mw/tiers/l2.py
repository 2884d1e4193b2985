"""L2: the cluster-wide tier in Redis (fakeredis when no ``MW_REDIS_URL`` is set).

Values are envelopes with real Redis TTLs (``SET ... PX``). Multi-key reads are one ``MGET``. A failing
Redis must not fail the caller: every call that cannot reach it raises :class:`TierUnavailable`, which
the manager counts and answers from the next tier. After a failure the tier stays "down" for
``MW_TIER_RETRY_S`` seconds of monotonic time, so a dead server costs one timeout, not one per call.

The sync client and the asyncio clients (one per event loop: redis.asyncio connections belong to the
loop that made them) share the URL and, in embedded mode, one in-process fake server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from mw.errors import TierUnavailable
from mw.observe import OBSERVERS, emit

__all__ = ["EMBEDDED_ATOMIC", "RedisTier", "TierUnavailable", "embedded_server"]

log = logging.getLogger("mw.l2")


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


_EMBEDDED: Any = None
_EMBEDDED_LOCK = threading.Lock()
EMBEDDED_ATOMIC = threading.RLock()
"""Embedded mode runs compare-and-set steps under this lock instead of Lua (fakeredis runs Lua slowly).

Every multi-command step that touches lease keys takes it, which gives those steps the atomicity a
real Redis gives a script: the fake server lives in this process, so this lock sees every client.
"""


def embedded_server() -> Any:
    """The process's one fake Redis: every embedded cluster shares it, as processes share a real one."""
    global _EMBEDDED
    with _EMBEDDED_LOCK:
        if _EMBEDDED is None:
            import fakeredis

            _EMBEDDED = fakeredis.FakeServer()
        return _EMBEDDED


class RedisTier:
    def __init__(self, url: str | None, *, namespace: str = "", timeout_s: float = 0.5, retry_s: float = 1.0) -> None:
        import redis

        self.url = url
        self.embedded = url is None
        self.atomic: Any = EMBEDDED_ATOMIC if self.embedded else contextlib.nullcontext()
        self.prefix = f"{namespace}:" if namespace else ""
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._down_until = 0.0
        self.on_recovered: list[Any] = []
        """Called (no arguments) by the first call that succeeds after the tier was marked down."""
        self._errors = _redis_errors()
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._alock = threading.Lock()
        self._server: Any = None
        if url is None:
            import fakeredis

            self._server = embedded_server()
            self.client: Any = fakeredis.FakeRedis(server=self._server)
        else:
            self.client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s or None,
                socket_connect_timeout=timeout_s or None,
                health_check_interval=30,
            )

    # --- helpers -------------------------------------------------------------------------------------
    def phys(self, key: str) -> str:
        """The Redis key of a logical key: the namespace (if any) in front, nothing else."""
        return self.prefix + key

    def logical(self, phys_key: str | bytes) -> str:
        text = phys_key.decode() if isinstance(phys_key, bytes) else phys_key
        return text[len(self.prefix) :]

    def _check_up(self) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise TierUnavailable(f"L2 {self.describe()} is marked down after a failure")

    def _failed(self, exc: BaseException) -> TierUnavailable:
        self._down_until = time.monotonic() + self._retry_s
        log.warning(
            "L2 %s failed: %s: %s (skipping L2 for %.1fs)",
            self.describe(),
            type(exc).__name__,
            exc,
            self._retry_s,
        )
        return TierUnavailable(f"L2 {self.describe()}: {type(exc).__name__}: {exc}")

    def _ok(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            for callback in list(self.on_recovered):
                callback()

    def describe(self) -> str:
        return "fakeredis (embedded)" if self.embedded else str(self.url)

    def aclient(self) -> Any:
        """The asyncio client for the running loop."""
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            with self._alock:
                client = self._aclients.get(loop)
                if client is None:
                    if self._server is not None:
                        import fakeredis

                        client = fakeredis.FakeAsyncRedis(server=self._server)
                    else:
                        import redis.asyncio

                        client = redis.asyncio.Redis.from_url(
                            str(self.url),
                            socket_timeout=self._timeout_s or None,
                            socket_connect_timeout=self._timeout_s or None,
                        )
                    self._aclients[loop] = client
        return client

    def _call(self, fn: Any, *args: Any) -> Any:
        self._check_up()
        try:
            result = fn(*args)
        except self._errors as exc:
            raise self._failed(exc) from exc
        self._ok()
        return result

    async def _acall(self, coro_fn: Any, *args: Any) -> Any:
        self._check_up()
        try:
            result = await coro_fn(*args)
        except self._errors as exc:
            raise self._failed(exc) from exc
        self._ok()
        return result

    @staticmethod
    def _seen(op: str, keys: Sequence[str]) -> None:
        if OBSERVERS:
            for key in keys:
                emit(op, "L2", key)

    # --- sync ----------------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        self._seen("read", (key,))
        return self._call(self.client.get, self.phys(key))  # type: ignore[no-any-return]

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self._seen("read", keys)
        if not keys:
            return []
        return list(self._call(self.client.mget, [self.phys(k) for k in keys]))

    def set(
        self, key: str, data: bytes, ttl_ms: int, clear: Sequence[str] = (), publish: tuple[str, bytes] | None = None
    ) -> None:
        """``SET key data PX ttl``, delete ``clear`` keys and publish a message, in one round trip."""
        self._seen("write", (key,))
        self._seen("delete", clear)
        with self.atomic:
            self._call(self._pipeline(self.client, key, data, ttl_ms, clear, (), publish).execute)

    def _pipeline(
        self,
        client: Any,
        key: str | None,
        data: bytes | None,
        ttl_ms: int,
        clear: Sequence[str],
        delete: Sequence[str],
        publish: tuple[str, bytes] | None,
    ) -> Any:
        # Deletes first, atomically (MULTI/EXEC; embedded: under EMBEDDED_ATOMIC already): a lease fill
        # cannot land between taking a lease away and the write.
        pipe = client.pipeline(transaction=not self.embedded)
        if clear or delete:
            pipe.delete(*[self.phys(k) for k in (*delete, *clear)])
        if key is not None:
            pipe.set(self.phys(key), data, px=ttl_ms)
        if publish is not None:
            pipe.publish(self.phys(publish[0]), publish[1])
        return pipe

    def delete(self, keys: Sequence[str], publish: tuple[str, bytes] | None = None) -> int:
        """Delete keys (and publish a message in the same round trip); return how many existed."""
        self._seen("delete", keys)
        if not keys:
            return 0
        with self.atomic:
            results = self._call(self._pipeline(self.client, None, None, 0, (), keys, publish).execute)
        return int(results[0])

    def publish(self, channel: str, message: bytes) -> None:
        self._call(self.client.publish, self.phys(channel), message)

    def run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered Lua script with logical keys."""
        return self._call(lambda: script(keys=[self.phys(k) for k in keys], args=list(args)))

    def set_nx(self, key: str, data: bytes, ttl_ms: int) -> bool:
        self._seen("write", (key,))
        return bool(self._call(self.client.set, self.phys(key), data, None, ttl_ms, True))

    def pttl(self, key: str) -> int:
        """Remaining TTL in ms as Redis reports it (-2 missing, -1 no expiry)."""
        return int(self._call(self.client.pttl, self.phys(key)))

    def scan_keys(self, match: str = "*", count: int = 500) -> list[str]:
        it = self._call(lambda: list(self.client.scan_iter(match=self.phys(match), count=count)))
        return [self.logical(k) for k in it]

    # --- async ---------------------------------------------------------------------------------------
    async def get_async(self, key: str) -> bytes | None:
        self._seen("read", (key,))
        return await self._acall(self.aclient().get, self.phys(key))  # type: ignore[no-any-return]

    async def mget_async(self, keys: Sequence[str]) -> list[bytes | None]:
        self._seen("read", keys)
        if not keys:
            return []
        return list(await self._acall(self.aclient().mget, [self.phys(k) for k in keys]))

    async def set_async(
        self, key: str, data: bytes, ttl_ms: int, clear: Sequence[str] = (), publish: tuple[str, bytes] | None = None
    ) -> None:
        if self.embedded:  # in-memory: the sync path does no I/O and keeps the embedded atomicity
            return self.set(key, data, ttl_ms, clear, publish)
        self._seen("write", (key,))
        self._seen("delete", clear)
        await self._acall(self._pipeline(self.aclient(), key, data, ttl_ms, clear, (), publish).execute)

    async def delete_async(self, keys: Sequence[str], publish: tuple[str, bytes] | None = None) -> int:
        if self.embedded:
            return self.delete(keys, publish)
        self._seen("delete", keys)
        if not keys:
            return 0
        results = await self._acall(self._pipeline(self.aclient(), None, None, 0, (), keys, publish).execute)
        return int(results[0])

    async def set_nx_async(self, key: str, data: bytes, ttl_ms: int) -> bool:
        self._seen("write", (key,))
        return bool(await self._acall(self.aclient().set, self.phys(key), data, None, ttl_ms, True))

    async def run_async(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._acall(lambda: script(keys=[self.phys(k) for k in keys], args=list(args)))

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self.client.close()
        self._aclients.clear()
