"""The effective runtime configuration of a run, and where each of its values came from.

Layers, lowest first: :class:`mw.MwConfig`'s defaults < the scenario's ``[runtime]`` < ``MW_*`` variables in the
environment (parsed by ``MwConfig.from_env``, so a bad value is mw's :class:`~mw.errors.ConfigError` naming the
variable) < what the simulator must set (each run's backend stores, ``enabled=False`` for the baseline, the per-run
``rng_seed``; ``pubsub`` on the Ray engine only) < explicit overrides (tests breaking a configuration on purpose). A
run that silently ignored ``MW_TASK_TTL_RUNNING_S=100`` would pass while production fails; here it runs with 100 s
and says so.

Task TTLs layer per status: ``MW_TASK_TTL_RUNNING_S`` alone changes only ``running``. ``MW_ENABLED=false`` is
honoured in the cached run too (its checks then fail: that is what such a deployment would get).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mw import MwConfig
from mw.errors import ConfigError
from mw.secrets import mask_secrets, masked

DEFAULT, SCENARIO, SIMULATOR, OVERRIDE = "default", "scenario", "simulator", "override"
ENV_PREFIX = "env "
TTLS = "task_ttls_s"

WHY_STORES = "the backend gives every run its own Redis namespace and Mlt database (--backend)"
WHY_BASELINE = "the baseline run measures Mlt without the cache"
WHY_SEED = "the simulator seeds every run's random stream from the scenario's seed, so a run replays exactly"
WHY_BUS = "the Ray engine's shards are separate processes: invalidations travel on the Redis bus"


@dataclass(frozen=True)
class Forced:
    """A value the simulator itself must set, and why (the report quotes it when it beat the environment)."""

    value: Any
    why: str


@dataclass(frozen=True)
class Setting:
    """One row of the effective configuration: ``task_ttls_s`` is one row per status (``task_ttls_s.running``)."""

    value: Any
    source: str
    """``default``, ``scenario``, ``env MW_X``, ``simulator`` or ``override``."""
    note: str = ""
    """What a lower layer asked for and did not get, or the scenario's value that was replaced."""

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"value": masked(self.value), "source": self.source}
        if self.note:
            row["note"] = mask_secrets(self.note)
        return row


@dataclass(frozen=True)
class Effective:
    config: MwConfig
    settings: dict[str, Setting]
    """Every field of ``config`` (task TTLs per status), in field order."""

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready ``{name: {"value", "source"[, "note"]}}``, every password masked."""
        return {name: s.as_dict() for name, s in self.settings.items()}


def variable(name: str) -> str:
    """The ``MW_*`` variable of a setting (``l2_ttl_s`` -> ``MW_L2_TTL_S``, ``task_ttls_s.running`` ->
    ``MW_TASK_TTL_RUNNING_S``): mw names every variable after its field."""
    if name.startswith(TTLS + "."):
        return f"MW_TASK_TTL_{name.split('.', 1)[1].upper()}_S"
    return f"MW_{name.upper()}"


def resolve(
    runtime: Mapping[str, Any],
    *,
    simulator: Mapping[str, Forced] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Effective:
    """Layer the configuration; ``environ`` defaults to ``os.environ`` as it is now."""
    env = os.environ if environ is None else environ
    from_env = MwConfig.from_env(env)  # validates every MW_* variable, naming the bad one
    fields = [f for f in dataclasses.fields(MwConfig) if f.name != TTLS]
    defaults = MwConfig()
    rows: dict[str, list[tuple[str, Any]]] = {f.name: [(DEFAULT, getattr(defaults, f.name))] for f in fields}
    for status, ttl in defaults.task_ttls_s.items():
        rows[f"{TTLS}.{status}"] = [(DEFAULT, ttl)]
    forced = simulator or {}
    layers = [
        {name: (SCENARIO, value) for name, value in _flat(SCENARIO, runtime).items()},
        {name: (ENV_PREFIX + variable(name), _env_value(from_env, name)) for name in rows if _given(env, name)},
        {name: (SIMULATOR, value) for name, value in _flat(SIMULATOR, {k: f.value for k, f in forced.items()}).items()},
        {name: (OVERRIDE, value) for name, value in _flat(OVERRIDE, overrides or {}).items()},
    ]
    for layer in layers:
        for name, entry in layer.items():
            rows.setdefault(name, [(DEFAULT, None)]).append(entry)
    whys = {name: f.why for name, f in forced.items()}
    settings = {name: _setting(name, chain, env, whys) for name, chain in rows.items()}
    values: dict[str, Any] = {f.name: settings[f.name].value for f in fields}
    values[TTLS] = {name.split(".", 1)[1]: s.value for name, s in settings.items() if name.startswith(TTLS + ".")}
    order = [f.name for f in dataclasses.fields(MwConfig)]
    ordered = dict(sorted(settings.items(), key=lambda item: order.index(item[0].split(".", 1)[0])))
    return Effective(MwConfig(**values), ordered)


def for_run(
    runtime: Mapping[str, Any],
    stores: Mapping[str, Any],
    *,
    caching: bool,
    rng_seed: int | str | None,
    pubsub: bool | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Effective:
    """A simulated run's configuration: ``stores`` are the backend's settings for it (URLs and namespace).

    ``pubsub``: forced (the Ray engine's shards need the bus); ``None`` leaves it to the layers below (the SimPy
    engine's nodes are clusters of their own, joined by the simulated bus: ``MW_PUBSUB=false`` is honoured).
    """
    return resolve(
        runtime,
        simulator=simulator_settings(stores, caching=caching, rng_seed=rng_seed, pubsub=pubsub),
        overrides=overrides,
        environ=environ,
    )


def simulator_settings(
    stores: Mapping[str, Any], *, caching: bool, rng_seed: int | str | None, pubsub: bool | None = None
) -> dict[str, Forced]:
    forced = {name: Forced(value, WHY_STORES) for name, value in stores.items()}
    forced["rng_seed"] = Forced(rng_seed, WHY_SEED)
    if pubsub is not None:
        forced["pubsub"] = Forced(pubsub, WHY_BUS)
    if not caching:
        forced["enabled"] = Forced(False, WHY_BASELINE)
    return forced


def reported(
    config: MwConfig,
    runtime: Mapping[str, Any],
    *,
    caching: bool,
    pubsub: bool | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The summary's ``config``: the configuration a run ran with, each value with its source, passwords masked.

    The simulator's own values are read back from ``config``; the layers are resolved again and must give ``config``
    exactly (they differ only if ``MW_*`` changed during the run: then no source could be trusted).
    """
    stores = {name: getattr(config, name) for name in ("redis_url", "mlt_dsn", "namespace")}
    topology = ("redis_cluster", "redis_sentinels", "redis_sentinel_master")  # a topology backend's, when set
    stores.update({name: getattr(config, name) for name in topology if getattr(config, name)})
    effective = for_run(
        runtime,
        stores,
        caching=caching,
        rng_seed=config.rng_seed,
        pubsub=pubsub,
        overrides=overrides,
        environ=environ,
    )
    if effective.config != config:
        name = next(
            f.name for f in dataclasses.fields(MwConfig) if getattr(effective.config, f.name) != getattr(config, f.name)
        )
        now = getattr(effective.config, name)
        raise ConfigError(variable(name), getattr(config, name), f"the run used this, its layers now give {now!r}")
    return effective.as_dict()


def _flat(source: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` by row name; a ``task_ttls_s`` table becomes one row per status it names."""
    known = {f.name for f in dataclasses.fields(MwConfig)}
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise ConfigError(name, value, f"no such setting ({source})")
        if name == TTLS:
            if not isinstance(value, Mapping):
                raise ConfigError(variable(f"{TTLS}.default"), value, "task_ttls_s must be a table of statuses")
            flat.update({f"{TTLS}.{status}": ttl for status, ttl in value.items()})
        else:
            flat[name] = value
    return flat


def _given(env: Mapping[str, str], name: str) -> bool:
    """As ``MwConfig.from_env`` reads it: an empty variable is not set."""
    raw = env.get(variable(name))
    return raw is not None and raw.strip() != ""


def _env_value(from_env: MwConfig, name: str) -> Any:
    if name.startswith(TTLS + "."):
        return from_env.task_ttls_s[name.split(".", 1)[1]]
    return getattr(from_env, name)


def _setting(name: str, chain: list[tuple[str, Any]], env: Mapping[str, str], whys: Mapping[str, str]) -> Setting:
    """The top of ``chain`` (lowest layer first), noting what it replaced that a reader should know about."""
    source, value = chain[-1]
    below = dict(chain[:-1])
    var = next((s[len(ENV_PREFIX) :] for s in below if s.startswith(ENV_PREFIX)), None)
    if var is not None and below[ENV_PREFIX + var] != value:
        why = whys.get(name.split(".", 1)[0], "") if source == SIMULATOR else "the run's overrides set it"
        return Setting(value, source, f"{var}={env[var].strip()} in the environment not applied: {why}")
    if name == "enabled" and value is False and source.startswith(ENV_PREFIX):
        return Setting(value, source, "caching is off in every run, the cached one too: its checks measure no cache")
    lower, was = chain[-2] if len(chain) > 1 else (DEFAULT, None)
    if source == SIMULATOR or was == value or was is None:
        return Setting(value, source)
    return Setting(value, source, f"the scenario says {was!r}" if lower == SCENARIO else f"the default is {was!r}")
