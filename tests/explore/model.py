"""An in-memory L2 and Mlt that expire on a virtual clock: what the explorer runs the runtime against.

The L2 model is a Redis *client* (the subset of redis-py's API that ``mw/tiers/l2.py`` and ``mw/lease.py``
call in embedded mode: ``GET``, ``MGET``, ``SET ... PX [NX]``, ``DEL``, ``PEXPIRE``, ``PUBLISH``, pipelines)
over one keyspace whose ``PX`` expiries run on the explorer's clock. It is installed as the public
``RedisTier.client`` of each cluster, so every command still passes through the real tier code: its
fault seam points, its failure classification, the lease compare-and-set steps. The compare-and-set
fill and release run as ``GET`` + pipeline under the tier's atomic lock, as they do on fakeredis.

Every command is logged (client, command, arguments, answer, virtual time) for the cross-check against
a real Redis (:mod:`tests.explore.crosscheck`), and reported to a listener: the scheduler uses the
writes and deletes to deliver invalidations between clusters (the bus, modelled) and the expiries to
number each key's epochs (:mod:`tests.explore.invariants`).

The Mlt model is a versioned store: the loaders read a snapshot of it; a call that takes longer than
its deadline (``MW_MLT_TIMEOUT_S`` on the virtual clock) fails with :class:`mw.errors.MltUnavailable`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Listener = Callable[[str, str, str, float | None, bytes | None], None]
"""``(client, op, phys_key, expire_at, data)``: op is ``set`` (its expiry and data), ``del``, ``expire`` or
``publish`` (the key is the channel, the data the message)."""


@dataclass
class Entry:
    data: bytes
    expire_at: float | None


@dataclass
class Logged:
    client: str
    at: float
    command: str
    args: tuple[Any, ...]
    answer: Any


class VirtualTime:
    """The explorer's clock. ``clock()`` makes a distinct callable on the same time (one cluster each:
    the runtime keys clusters by their clock, and the explorer needs two of them in one process)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.start = start
        self.now = start

    def clock(self) -> Callable[[], float]:
        def now() -> float:
            return self.now

        return now

    @property
    def elapsed(self) -> float:
        return self.now - self.start


class ModelRedis:
    """One Redis keyspace on virtual time."""

    def __init__(self, time: VirtualTime, listener: Listener | None = None) -> None:
        self.time = time
        self.data: dict[str, Entry] = {}
        self.log: list[Logged] = []
        self.listener = listener
        self.published: list[tuple[str, str, bytes]] = []

    # --- keyspace ------------------------------------------------------------------------------------
    def _live(self, key: str) -> Entry | None:
        entry = self.data.get(key)
        if entry is not None and entry.expire_at is not None and entry.expire_at <= self.time.now:
            del self.data[key]
            self._tell("clock", "expire", key, entry.expire_at)
            return None
        return entry

    def expire_due(self, who: str = "clock") -> None:
        """Drop every entry whose expiry has passed, telling the listener (the clock moved)."""
        now = self.time.now
        due = sorted((e.expire_at, k) for k, e in self.data.items() if e.expire_at is not None and e.expire_at <= now)
        for expire_at, key in due:
            del self.data[key]
            self._tell(who, "expire", key, expire_at)

    def client(self, name: str) -> ModelClient:
        return ModelClient(self, name)

    def apply(self, who: str, command: str, args: tuple[Any, ...]) -> Any:
        """Run one command atomically; the answers are those of Redis (and redis-py's conversions)."""
        answer = self._run(who, command, args)
        self.log.append(Logged(who, self.time.now, command, args, answer))
        return answer

    def _run(self, who: str, command: str, args: tuple[Any, ...]) -> Any:
        now = self.time.now
        if command == "get":
            entry = self._live(args[0])
            return None if entry is None else entry.data
        if command == "mget":
            return [None if (e := self._live(k)) is None else e.data for k in args[0]]
        if command == "set":
            key, value, px, nx = args
            if nx and self._live(key) is not None:
                return None
            expire_at = None if px is None else now + int(px) / 1000
            data = self.data[key] = Entry(_bytes(value), expire_at)
            self._tell(who, "set", key, expire_at, data.data)
            return True
        if command == "delete":
            n = 0
            for key in args:
                if self._live(key) is not None:
                    del self.data[key]
                    n += 1
                    self._tell(who, "del", key, None)
            return n
        if command == "pexpire":
            key, ms = args
            entry = self._live(key)
            if entry is None:
                return False
            entry.expire_at = now + int(ms) / 1000
            self._tell(who, "set", key, entry.expire_at, entry.data)
            return True
        if command == "pttl":
            entry = self._live(args[0])
            if entry is None:
                return -2
            return -1 if entry.expire_at is None else max(0, round((entry.expire_at - now) * 1000))
        if command == "publish":
            channel, message = args
            self.published.append((who, _text(channel), _bytes(message)))
            self._tell(who, "publish", _text(channel), None, _bytes(message))
            return 0
        if command == "keys":
            return sorted(
                k.encode() for k in self.data if self._live(k) is not None and fnmatch.fnmatchcase(k, args[0])
            )
        raise NotImplementedError(f"the L2 model has no {command!r}")

    def _tell(self, who: str, op: str, key: str, expire_at: float | None, data: bytes | None = None) -> None:
        if self.listener is not None:
            self.listener(who, op, key, expire_at, data)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (int, float)):
        return repr(value).encode()
    raise TypeError(f"the L2 model stores bytes, str or numbers, not {type(value).__name__}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Pool:
    def disconnect(self, inuse_connections: bool = True) -> None:
        """A dropped connection: the model has none to close (the next command simply runs)."""


class ModelClient:
    """The redis-py surface the runtime uses, over :class:`ModelRedis`."""

    def __init__(self, model: ModelRedis, name: str) -> None:
        self.model = model
        self.name = name
        self.connection_pool = _Pool()

    def _do(self, command: str, *args: Any) -> Any:
        return self.model.apply(self.name, command, args)

    def get(self, name: str) -> bytes | None:
        return self._do("get", _text(name))  # type: ignore[no-any-return]

    def mget(self, keys: list[str]) -> list[bytes | None]:
        return self._do("mget", [_text(k) for k in keys])  # type: ignore[no-any-return]

    def set(self, name: str, value: Any, px: int | None = None, nx: bool = False) -> bool | None:
        return self._do("set", _text(name), value, px, nx)  # type: ignore[no-any-return]

    def delete(self, *names: str) -> int:
        return self._do("delete", *[_text(n) for n in names])  # type: ignore[no-any-return]

    def pexpire(self, name: str, ms: int) -> bool:
        return self._do("pexpire", _text(name), ms)  # type: ignore[no-any-return]

    def pttl(self, name: str) -> int:
        return self._do("pttl", _text(name))  # type: ignore[no-any-return]

    def publish(self, channel: str, message: Any) -> int:
        return self._do("publish", channel, message)  # type: ignore[no-any-return]

    def scan_iter(self, match: str = "*", count: int = 500) -> Iterator[bytes]:
        return iter(self._do("keys", match))

    def pipeline(self, transaction: bool = True) -> ModelPipeline:
        return ModelPipeline(self)

    def pubsub(self) -> Any:
        raise NotImplementedError("the explorer models the bus itself (MW_PUBSUB=false)")

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class ModelPipeline:
    """Queued commands, run back to back when executed (atomic: nothing else runs in between)."""

    client: ModelClient
    queued: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def delete(self, *names: str) -> ModelPipeline:
        self.queued.append(("delete", tuple(_text(n) for n in names)))
        return self

    def set(self, name: str, value: Any, px: int | None = None, nx: bool = False) -> ModelPipeline:
        self.queued.append(("set", (_text(name), value, px, nx)))
        return self

    def publish(self, channel: str, message: Any) -> ModelPipeline:
        self.queued.append(("publish", (channel, message)))
        return self

    def execute(self) -> list[Any]:
        queued, self.queued = self.queued, []
        return [self.client.model.apply(self.client.name, command, args) for command, args in queued]


class MltModel:
    """The store behind the loaders: each key's version and value (``None``: absent), on virtual time."""

    def __init__(self, time: VirtualTime, timeout_s: float) -> None:
        self.time = time
        self.timeout_s = timeout_s
        self.rows: dict[str, tuple[int, Any]] = {}
        self.absent_versions: dict[str, list[int]] = {}
        self.reads = 0

    def put(self, key: str, version: int, value: Any) -> None:
        self.rows[key] = (version, value)
        if value is None:
            self.absent_versions.setdefault(key, []).append(version)

    def snapshot(self, key: str) -> tuple[int, Any]:
        """What a loader reads (at the start of its call)."""
        self.reads += 1
        return self.rows.get(key, (0, None))
