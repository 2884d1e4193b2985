"""Every setting, its default, and how it is read from the environment.

The origin system froze its settings at import and never read three of them (defect 12). Here
:meth:`MwConfig.from_env` reads ``os.environ`` each time it is called, validates every value and
raises :class:`~mw.errors.ConfigError` naming the variable and the value it refused. A TTL of 0 is a
real value ("do not cache"), never replaced by a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from mw.errors import ConfigError
from mw.keys import check_namespace
from mw.secrets import masked
from mw.ttl import check_ttl

TASK_STATUSES = ("created", "queued", "running", "retry", "completed", "failed", "cancelled")

DEFAULT_TASK_TTLS_S: dict[str, float] = {
    "created": 10.0,
    "queued": 10.0,
    "running": 10.0,
    "retry": 20.0,
    "completed": 600.0,
    "failed": 300.0,
    "cancelled": 300.0,
    "default": 30.0,
    "negative": 30.0,
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(name, raw, "expected one of true/false, 1/0, yes/no, on/off")


def _parse_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, "expected a number of seconds") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(name, raw, "expected a finite number of seconds")
    if value < 0:
        raise ConfigError(name, raw, "a TTL cannot be negative (0 means: do not cache)")
    return value


_HALF_LIFE = "expected a finite number of seconds >= 0 (0: hot-item counts never decay)"


def _parse_half_life(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, _HALF_LIFE) from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(name, raw, _HALF_LIFE)
    return value


def _parse_fraction(name: str, raw: str) -> float:
    value = _parse_seconds(name, raw)
    if value >= 1:
        raise ConfigError(name, raw, "expected a fraction in [0, 1)")
    return value


def _parse_seed(name: str, raw: str) -> int | str:
    value = raw.strip()
    return int(value) if value.lstrip("-").isdigit() else value


def _parse_count(name: str, raw: str, minimum: int = 1) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, "expected a whole number") from None
    if value < minimum:
        raise ConfigError(name, raw, f"must be at least {minimum}")
    return value


def _parse_namespace(name: str, raw: str) -> str:
    value = raw.strip()
    if any(ord(c) < 32 or c.isspace() for c in value):
        raise ConfigError(name, raw, "no whitespace or control characters")
    if len(value) > 64:
        raise ConfigError(name, raw, "at most 64 characters")
    return value


def _parse_codec(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("json", "msgpack"):
        raise ConfigError(name, raw, "expected json or msgpack")
    return value


@dataclass(frozen=True)
class MwConfig:
    """Settings of one Mw deployment. Equal configs share one cluster (L2 pool, Mlt pool) per process."""

    enabled: bool = True
    l0_max_items: int = 10_000
    l0_max_bytes: int = 64 * 1024 * 1024
    l1_ttl_s: float = 30.0
    l1_max_items: int = 100_000
    l1_max_bytes: int = 256 * 1024 * 1024
    l2_ttl_s: float = 3600.0
    redis_url: str | None = None
    mlt_dsn: str | None = None
    namespace: str = ""
    task_ttls_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TASK_TTLS_S))
    codec: str = "json"
    compress_min_bytes: int = 1024
    max_value_bytes: int = 1024 * 1024
    redis_timeout_s: float = 0.5
    tier_retry_s: float = 1.0
    hot_items_capacity: int = 64
    hot_items_half_life_s: float = 0.0
    """``MW_HOT_ITEMS_HALF_LIFE_S``: a read counts half as much this much later in the hot-items ranking that
    heartbeats report and prewarming follows; 0 (the default): counts never decay."""
    pubsub: bool = True
    lease_ttl_s: float = 10.0
    ttl_jitter: float = 0.1
    xfetch_beta: float = 1.0
    prewarm_max_per_call: int = 100
    stampede_protection: bool = True
    negative_cache: bool = True
    rng_seed: int | str | None = None
    """Seeds the cluster's own random stream (TTL jitter, XFetch): simulations replay exactly."""
    load_timeout_s: float = 30.0
    """The deadline of every read-through call: past it the caller gets :class:`mw.errors.LoadTimeout`."""
    mlt_timeout_s: float = 5.0
    """Client-side deadline on every Mlt connect and statement: past it, :class:`mw.errors.MltUnavailable`."""
    redis_connect_timeout_s: float | None = None
    """``MW_REDIS_CONNECT_TIMEOUT_S``: the deadline of a new connection. Unset: ``redis_timeout_s``, but at least
    :data:`TLS_CONNECT_TIMEOUT_S` on ``rediss://``, whose handshake a busy server or client can take longer than a
    command (a herd of new TLS connections timing out would mark a healthy L2 down)."""
    redis_ca_cert: str | None = None
    """``MW_REDIS_CA_CERT``: the CA file a ``rediss://`` server's certificate is checked against."""
    redis_client_cert: str | None = None
    """``MW_REDIS_CLIENT_CERT``: this client's certificate, for a server that requires one (with the key)."""
    redis_client_key: str | None = None
    """``MW_REDIS_CLIENT_KEY``: the private key of ``redis_client_cert``."""
    redis_cluster: bool = False
    """``MW_REDIS_CLUSTER``: ``MW_REDIS_URL`` names a node of a Redis Cluster (see :mod:`mw.tiers.topology`)."""
    redis_sentinels: str | None = None
    """``MW_REDIS_SENTINELS``: ``host:port,...`` of a Sentinel group; L2 is the primary it names
    ``redis_sentinel_master``, and ``MW_REDIS_URL`` (optional) gives only its user, password and database."""
    redis_sentinel_master: str | None = None
    """``MW_REDIS_SENTINEL_MASTER``: the Sentinel group's name for the primary."""
    redis_wait_replicas: int | None = None
    """``MW_REDIS_WAIT_REPLICAS``: replicas that must confirm (``WAIT``) each write or delete that invalidates, so a
    failover cannot lose it; an unconfirmed one is replayed. Unset: 1 with a Sentinel group, else 0 (off); never on
    a cluster (see docs/runtime.md)."""
    redis_wait_timeout_s: float | None = None
    """``MW_REDIS_WAIT_TIMEOUT_S``: how long a change waits for those replicas before it counts as unconfirmed;
    shorter than ``redis_timeout_s`` (WAIT holds the connection). Unset: 0.1 s, at most half ``redis_timeout_s``."""

    def __post_init__(self) -> None:
        for status in DEFAULT_TASK_TTLS_S:
            if status not in self.task_ttls_s:
                raise ConfigError(f"MW_TASK_TTL_{status.upper()}_S", None, "missing from task_ttls_s")
        for status, ttl in self.task_ttls_s.items():
            check_ttl(ttl, f"MW_TASK_TTL_{status.upper()}_S")
        for name, value in (
            ("MW_L1_TTL_S", self.l1_ttl_s),
            ("MW_L2_TTL_S", self.l2_ttl_s),
            ("MW_LEASE_TTL_S", self.lease_ttl_s),
        ):
            check_ttl(value, name)
        check_namespace(self.namespace)
        if not 0 <= self.ttl_jitter < 1:
            raise ConfigError("MW_TTL_JITTER", self.ttl_jitter, "expected a fraction in [0, 1)")
        if not (math.isfinite(self.hot_items_half_life_s) and self.hot_items_half_life_s >= 0):
            raise ConfigError("MW_HOT_ITEMS_HALF_LIFE_S", self.hot_items_half_life_s, _HALF_LIFE)
        if self.lease_ttl_s <= 0:
            raise ConfigError("MW_LEASE_TTL_S", self.lease_ttl_s, "a lease needs a positive TTL")
        for name, value in (("MW_LOAD_TIMEOUT_S", self.load_timeout_s), ("MW_MLT_TIMEOUT_S", self.mlt_timeout_s)):
            if value <= 0:
                raise ConfigError(name, value, "a deadline must be a positive number of seconds")
        for name, count in (
            ("MW_L0_MAX_ITEMS", self.l0_max_items),
            ("MW_L0_MAX_BYTES", self.l0_max_bytes),
            ("MW_L1_MAX_ITEMS", self.l1_max_items),
            ("MW_L1_MAX_BYTES", self.l1_max_bytes),
            ("MW_MAX_VALUE_BYTES", self.max_value_bytes),
        ):
            if count < 1:
                raise ConfigError(name, count, "must be at least 1")
        if self.redis_connect_timeout_s is not None and not (
            math.isfinite(self.redis_connect_timeout_s) and self.redis_connect_timeout_s > 0
        ):
            raise ConfigError(
                "MW_REDIS_CONNECT_TIMEOUT_S",
                self.redis_connect_timeout_s,
                "a connect deadline must be a positive number",
            )
        self._check_tls()
        self._check_topology()
        # A frozen dataclass must stay hashable: store the TTL table as a sorted tuple-backed dict copy.
        object.__setattr__(self, "task_ttls_s", _FrozenTTLs(self.task_ttls_s))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> MwConfig:
        """Read every ``MW_*`` variable now. ``overrides`` (field names) win over the environment."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        scalar: dict[str, tuple[str, Callable[[str, str], object]]] = {
            "MW_ENABLED": ("enabled", _parse_bool),
            "MW_L0_MAX_ITEMS": ("l0_max_items", _parse_count),
            "MW_L0_MAX_BYTES": ("l0_max_bytes", _parse_count),
            "MW_L1_TTL_S": ("l1_ttl_s", _parse_seconds),
            "MW_L1_MAX_ITEMS": ("l1_max_items", _parse_count),
            "MW_L1_MAX_BYTES": ("l1_max_bytes", _parse_count),
            "MW_L2_TTL_S": ("l2_ttl_s", _parse_seconds),
            "MW_NAMESPACE": ("namespace", _parse_namespace),
            "MW_CODEC": ("codec", _parse_codec),
            "MW_COMPRESS_MIN_BYTES": ("compress_min_bytes", _parse_count),
            "MW_MAX_VALUE_BYTES": ("max_value_bytes", _parse_count),
            "MW_REDIS_TIMEOUT_S": ("redis_timeout_s", _parse_seconds),
            "MW_REDIS_CONNECT_TIMEOUT_S": ("redis_connect_timeout_s", _parse_seconds),
            "MW_TIER_RETRY_S": ("tier_retry_s", _parse_seconds),
            "MW_HOT_ITEMS_CAPACITY": ("hot_items_capacity", _parse_count),
            "MW_HOT_ITEMS_HALF_LIFE_S": ("hot_items_half_life_s", _parse_half_life),
            "MW_PUBSUB": ("pubsub", _parse_bool),
            "MW_LEASE_TTL_S": ("lease_ttl_s", _parse_seconds),
            "MW_TTL_JITTER": ("ttl_jitter", _parse_fraction),
            "MW_XFETCH_BETA": ("xfetch_beta", _parse_seconds),
            "MW_PREWARM_MAX_PER_CALL": ("prewarm_max_per_call", _parse_count),
            "MW_STAMPEDE_PROTECTION": ("stampede_protection", _parse_bool),
            "MW_NEGATIVE_CACHE": ("negative_cache", _parse_bool),
            "MW_RNG_SEED": ("rng_seed", _parse_seed),
            "MW_LOAD_TIMEOUT_S": ("load_timeout_s", _parse_seconds),
            "MW_MLT_TIMEOUT_S": ("mlt_timeout_s", _parse_seconds),
            "MW_REDIS_CLUSTER": ("redis_cluster", _parse_bool),
            "MW_REDIS_SENTINELS": ("redis_sentinels", _parse_text),
            "MW_REDIS_SENTINEL_MASTER": ("redis_sentinel_master", _parse_text),
            "MW_REDIS_WAIT_REPLICAS": ("redis_wait_replicas", lambda n, r: _parse_count(n, r, minimum=0)),
            "MW_REDIS_WAIT_TIMEOUT_S": ("redis_wait_timeout_s", _parse_seconds),
        }
        for var, (attr, parse) in scalar.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                kwargs[attr] = parse(var, raw)
        for var, attr in (("MW_REDIS_URL", "redis_url"), ("MW_MLT_DSN", "mlt_dsn")):
            raw = env.get(var)
            if raw is not None and raw.strip():
                kwargs[attr] = _check_url(var, raw.strip())
        for var, attr in TLS_FILES.items():
            raw = env.get(var)
            if raw is not None and raw.strip():
                kwargs[attr] = raw.strip()
        ttls = dict(DEFAULT_TASK_TTLS_S)
        for status in DEFAULT_TASK_TTLS_S:
            var = f"MW_TASK_TTL_{status.upper()}_S"
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                ttls[status] = _parse_seconds(var, raw)
        for var, raw in env.items():
            if var.startswith("MW_TASK_TTL_") and var.endswith("_S"):
                status = var[len("MW_TASK_TTL_") : -len("_S")].lower()
                if status not in DEFAULT_TASK_TTLS_S:
                    known = ", ".join(DEFAULT_TASK_TTLS_S)
                    raise ConfigError(
                        var, raw, f"no task status {status!r} (known: {known}); a typo would be ignored silently"
                    )
        kwargs["task_ttls_s"] = ttls
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(sorted(unknown)[0], overrides[sorted(unknown)[0]], "no such setting")
        kwargs.update(overrides)
        if "task_ttls_s" in overrides:
            kwargs["task_ttls_s"] = merge_task_ttls(ttls, overrides["task_ttls_s"])
        return cls(**kwargs)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> MwConfig:
        """A copy with ``changes``; a partial ``task_ttls_s`` changes only the statuses it names."""
        if "task_ttls_s" in changes:
            changes = {**changes, "task_ttls_s": merge_task_ttls(self.task_ttls_s, changes["task_ttls_s"])}
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_task_ttls(self, **ttls_s: float) -> MwConfig:
        """A copy where only the named statuses change: ``config.with_task_ttls(running=3)``."""
        return self.replace(task_ttls_s=ttls_s)

    def task_ttl_s(self, status: str | None) -> float:
        """TTL for a task status; unknown statuses get the ``default`` TTL (documented, not silent)."""
        key = (status or "").lower()
        ttls = self.task_ttls_s
        return ttls[key] if key in ttls and key not in ("default", "negative") else ttls["default"]

    @property
    def negative_ttl_s(self) -> float:
        return self.task_ttls_s["negative"]

    def cluster_identity(self) -> tuple[object, ...]:
        """What decides whether two managers reach the same shared tiers."""
        topology = (self.redis_cluster, self.redis_sentinels, self.redis_sentinel_master)
        return (self.redis_url, self.mlt_dsn, self.namespace, *self.redis_tls().values(), *topology)

    @property
    def wait_replicas(self) -> int:
        """The replicas each invalidating change waits for (see ``redis_wait_replicas``)."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @property
    def wait_timeout_s(self) -> float:
        """How long a change waits for its replicas (see ``redis_wait_timeout_s``)."""
        if self.redis_wait_timeout_s is not None:
            return self.redis_wait_timeout_s
        if self.redis_timeout_s > 0:  # 0: no socket deadline to stay under
            return min(DEFAULT_WAIT_TIMEOUT_S, self.redis_timeout_s / 2)
        return DEFAULT_WAIT_TIMEOUT_S

    @property
    def sentinel_hosts(self) -> tuple[tuple[str, int], ...]:
        """``redis_sentinels`` as ``(host, port)`` pairs (empty: no Sentinel group)."""
        return _sentinel_hosts(self.redis_sentinels) if self.redis_sentinels else ()

    def _check_topology(self) -> None:
        """One topology at a time, with what it needs; a cluster's namespace may hold no brace (its hash tags)."""
        if self.redis_cluster and self.redis_sentinels:
            raise ConfigError("MW_REDIS_CLUSTER", True, "a Redis Cluster has no Sentinel group: unset one of them")
        if self.redis_cluster:
            if not self.redis_url:
                raise ConfigError("MW_REDIS_CLUSTER", True, "needs MW_REDIS_URL naming one node of the cluster")
            if "{" in self.namespace or "}" in self.namespace:
                raise ConfigError("MW_NAMESPACE", self.namespace, "may hold no brace on a cluster (hash tags)")
            if self.redis_wait_replicas:
                raise ConfigError(
                    "MW_REDIS_WAIT_REPLICAS", self.redis_wait_replicas, "not on a cluster (see docs/runtime.md)"
                )
        if self.redis_wait_replicas is not None and self.redis_wait_replicas < 0:
            raise ConfigError("MW_REDIS_WAIT_REPLICAS", self.redis_wait_replicas, "must be 0 (off) or more")
        wait_s = self.redis_wait_timeout_s
        if wait_s is not None and not (math.isfinite(wait_s) and wait_s > 0):
            raise ConfigError("MW_REDIS_WAIT_TIMEOUT_S", wait_s, "must be a positive number")
        if wait_s is not None and self.wait_replicas and 0 < self.redis_timeout_s <= wait_s:
            raise ConfigError(
                "MW_REDIS_WAIT_TIMEOUT_S",
                self.redis_wait_timeout_s,
                f"must be shorter than MW_REDIS_TIMEOUT_S ({self.redis_timeout_s:g}): WAIT blocks the connection",
            )
        master = self.redis_sentinel_master
        if master is not None and (not master or any(c.isspace() for c in master)):
            raise ConfigError("MW_REDIS_SENTINEL_MASTER", master, "a Sentinel master name is one word")
        if self.redis_sentinels is not None:
            _sentinel_hosts(self.redis_sentinels)
        if (self.redis_sentinels is None) != (master is None):
            var = "MW_REDIS_SENTINEL_MASTER" if master is None else "MW_REDIS_SENTINELS"
            raise ConfigError(var, None, "a Sentinel group needs both MW_REDIS_SENTINELS and MW_REDIS_SENTINEL_MASTER")
        if self.redis_sentinels is not None and (self.redis_url or "").startswith(("rediss://", "unix://")):
            raise ConfigError(
                "MW_REDIS_URL", self.redis_url, "with a Sentinel group only redis:// (user, password, db) is used"
            )

    @property
    def connect_timeout_s(self) -> float:
        """The deadline of a new Redis connection (see ``redis_connect_timeout_s``)."""
        if self.redis_connect_timeout_s is not None:
            return self.redis_connect_timeout_s
        tls = (self.redis_url or "").startswith("rediss://")
        if tls and self.redis_timeout_s > 0:  # 0 is "no deadline", which no floor may turn into one
            return max(self.redis_timeout_s, TLS_CONNECT_TIMEOUT_S)
        return self.redis_timeout_s

    def redis_tls(self) -> dict[str, str]:
        """redis-py's TLS arguments (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``) for the files set."""
        names = {
            "redis_ca_cert": "ssl_ca_certs",
            "redis_client_cert": "ssl_certfile",
            "redis_client_key": "ssl_keyfile",
        }
        return {arg: getattr(self, attr) for attr, arg in names.items() if getattr(self, attr)}

    def _check_tls(self) -> None:
        """TLS files need a ``rediss://`` URL (on ``redis://`` they would be ignored: plain text while the operator
        believes it encrypted), must be readable files, and a client certificate comes with its key."""
        for var, attr in TLS_FILES.items():
            path = getattr(self, attr)
            if path is None:
                continue
            if not (self.redis_url or "").startswith("rediss://"):
                raise ConfigError(var, path, "TLS files need MW_REDIS_URL=rediss://... (a redis:// URL is plain text)")
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise ConfigError(var, path, "no such readable file")
        query = {k.lower(): v[-1].strip().lower() for k, v in parse_qs(urlsplit(self.redis_url or "").query).items()}
        tls_args = sorted(k for k in query if k.startswith("ssl_"))
        if tls_args and not (self.redis_url or "").startswith("rediss://"):
            raise ConfigError("MW_REDIS_URL", self.redis_url, f"{tls_args[0]} needs rediss:// (redis:// is plain text)")
        if query.get("ssl_cert_reqs") in ("none", "optional") or query.get("ssl_check_hostname") in (
            "false",
            "no",
            "0",
        ):
            raise ConfigError(
                "MW_REDIS_URL",
                self.redis_url,
                "turns certificate or hostname checking off: not a TLS setting Mw accepts",
            )
        if (self.redis_client_cert is None) != (self.redis_client_key is None):
            var = "MW_REDIS_CLIENT_KEY" if self.redis_client_key is None else "MW_REDIS_CLIENT_CERT"
            raise ConfigError(var, None, "a client certificate and its key are set together")

    def __repr__(self) -> str:
        """The dataclass's repr with the URLs' passwords masked: configs end up in logs and failure messages."""
        shown = ", ".join(f"{f.name}={masked(getattr(self, f.name))!r}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({shown})"


DEFAULT_WAIT_TIMEOUT_S = 0.1
"""``MW_REDIS_WAIT_TIMEOUT_S`` when unset (and ``MW_REDIS_TIMEOUT_S`` is at least twice that)."""

TLS_CONNECT_TIMEOUT_S = 2.0
"""The least connect deadline on ``rediss://`` when ``MW_REDIS_CONNECT_TIMEOUT_S`` is unset: a TLS handshake is
several round trips and a signature, which a server busy with a herd of new connections serves late."""

TLS_FILES = {
    "MW_REDIS_CA_CERT": "redis_ca_cert",
    "MW_REDIS_CLIENT_CERT": "redis_client_cert",
    "MW_REDIS_CLIENT_KEY": "redis_client_key",
}
"""The TLS files' variables and the fields they set."""


def merge_task_ttls(base: Mapping[str, float], changes: object) -> dict[str, float]:
    """``base`` with the statuses ``changes`` names replaced: one status changes without restating the others.

    A status that is not in the table is a :class:`ConfigError` naming it (a typo would otherwise be ignored).
    """
    if not isinstance(changes, Mapping):
        raise ConfigError("task_ttls_s", changes, "expected a mapping of task status to seconds")
    merged = dict(base)
    for status, ttl in changes.items():
        name = str(status).lower()
        if name not in DEFAULT_TASK_TTLS_S:
            raise ConfigError(
                f"MW_TASK_TTL_{str(status).upper()}_S",
                ttl,
                f"no task status {status!r} (known: {', '.join(DEFAULT_TASK_TTLS_S)})",
            )
        merged[name] = ttl
    return merged


class _FrozenTTLs(dict):  # type: ignore[type-arg]
    """A read-only, hashable TTL table so that equal configs compare and hash equal."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("MwConfig.task_ttls_s is read-only; use MwConfig.replace(task_ttls_s=...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]


def _parse_text(name: str, raw: str) -> str:
    return raw.strip()


def _sentinel_hosts(raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs; a :class:`ConfigError` names the first bad entry."""
    hosts = []
    for entry in raw.split(","):
        host, colon, port = entry.strip().rpartition(":")
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError("MW_REDIS_SENTINELS", entry.strip(), "expected host:port (comma-separated)")
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts)


def _check_url(var: str, raw: str) -> str:
    if var == "MW_REDIS_URL" and not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(var, raw, "expected a redis://, rediss:// or unix:// URL")
    if var == "MW_MLT_DSN" and not raw.startswith(("postgresql://", "postgres://", "sqlite://")):
        raise ConfigError(var, raw, "expected postgresql://... or sqlite:///path (or sqlite:// for in-memory)")
    return raw
