"""``MwConfig`` <-> the ``MW_*`` variables a Ray ``runtime_env`` carries to actors.

Actors read their configuration with :meth:`MwConfig.from_env`, as any process does, so the checklist's
TTL variables work on a cluster. :func:`env_vars` writes *every* setting (defaults included): on a local
cluster workers inherit the driver's environment, and a stray ``MW_*`` in a developer's shell must not
change what the actors run with.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from mw.config import MwConfig

_SCALARS: dict[str, str] = {
    "enabled": "MW_ENABLED",
    "l0_max_items": "MW_L0_MAX_ITEMS",
    "l0_max_bytes": "MW_L0_MAX_BYTES",
    "l1_ttl_s": "MW_L1_TTL_S",
    "l1_max_items": "MW_L1_MAX_ITEMS",
    "l1_max_bytes": "MW_L1_MAX_BYTES",
    "l2_ttl_s": "MW_L2_TTL_S",
    "redis_url": "MW_REDIS_URL",
    "mlt_dsn": "MW_MLT_DSN",
    "namespace": "MW_NAMESPACE",
    "codec": "MW_CODEC",
    "compress_min_bytes": "MW_COMPRESS_MIN_BYTES",
    "max_value_bytes": "MW_MAX_VALUE_BYTES",
    "redis_timeout_s": "MW_REDIS_TIMEOUT_S",
    "tier_retry_s": "MW_TIER_RETRY_S",
    "hot_items_capacity": "MW_HOT_ITEMS_CAPACITY",
    "hot_items_half_life_s": "MW_HOT_ITEMS_HALF_LIFE_S",
    "pubsub": "MW_PUBSUB",
    "lease_ttl_s": "MW_LEASE_TTL_S",
    "ttl_jitter": "MW_TTL_JITTER",
    "xfetch_beta": "MW_XFETCH_BETA",
    "prewarm_max_per_call": "MW_PREWARM_MAX_PER_CALL",
    "stampede_protection": "MW_STAMPEDE_PROTECTION",
    "negative_cache": "MW_NEGATIVE_CACHE",
    "rng_seed": "MW_RNG_SEED",
    "load_timeout_s": "MW_LOAD_TIMEOUT_S",
    "mlt_timeout_s": "MW_MLT_TIMEOUT_S",
    "redis_connect_timeout_s": "MW_REDIS_CONNECT_TIMEOUT_S",
    "redis_ca_cert": "MW_REDIS_CA_CERT",
    "redis_client_cert": "MW_REDIS_CLIENT_CERT",
    "redis_client_key": "MW_REDIS_CLIENT_KEY",
    "redis_cluster": "MW_REDIS_CLUSTER",
    "redis_sentinels": "MW_REDIS_SENTINELS",
    "redis_sentinel_master": "MW_REDIS_SENTINEL_MASTER",
    "redis_wait_replicas": "MW_REDIS_WAIT_REPLICAS",
    "redis_wait_timeout_s": "MW_REDIS_WAIT_TIMEOUT_S",
}

RAY_L1_VAR = "MW_RAY_L1"
"""``actor`` (default): agents share the node's :class:`~mw.ray.NodeCache`; ``process``: an in-process L1 each."""
RAY_L1_TIMEOUT_VAR = "MW_RAY_L1_TIMEOUT_S"
"""How long a synchronous read waits for the node actor before it counts a timeout and goes on to L2."""


def _text(value: object) -> str:
    if value is None:
        return ""  # from_env treats an empty variable as unset
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def env_vars(config: MwConfig, **extra: str) -> dict[str, str]:
    """Every setting of ``config`` as ``MW_*`` variables, plus ``extra`` (e.g. ``MW_RAY_L1="process"``).

    ``MwConfig.from_env(env_vars(c)) == c``; a new ``MwConfig`` field without a variable here raises, so
    a setting can never silently stay behind on the driver.
    """
    out: dict[str, str] = {}
    for f in dataclasses.fields(config):
        if f.name == "task_ttls_s":
            for status, ttl in config.task_ttls_s.items():
                out[f"MW_TASK_TTL_{status.upper()}_S"] = _text(float(ttl))
            continue
        var = _SCALARS.get(f.name)
        if var is None:
            raise KeyError(f"MwConfig.{f.name} has no MW_* variable in mw.ray.env; add it there")
        out[var] = _text(getattr(config, f.name))
    out.update(extra)
    return out


def ray_l1_mode(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    mode = env.get(RAY_L1_VAR, "").strip().lower() or "actor"
    if mode not in ("actor", "process"):
        raise ValueError(f"{RAY_L1_VAR}={mode!r}: expected actor or process")
    return mode


def ray_l1_timeout_s(config: MwConfig, environ: Mapping[str, str] | None = None) -> float:
    """``MW_RAY_L1_TIMEOUT_S``, else the Redis timeout: a node tier may not cost more than the tier below."""
    env = os.environ if environ is None else environ
    raw = env.get(RAY_L1_TIMEOUT_VAR, "").strip()
    if not raw:
        return config.redis_timeout_s or 0.5
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{RAY_L1_TIMEOUT_VAR}={raw!r}: expected a positive number of seconds")
    return value
