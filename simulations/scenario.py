"""Scenarios: a TOML file says what load to run and which checklist targets the run must meet.

Every table maps to a frozen dataclass below; an unknown key is an error naming it (a typo must not silently turn a
workload or a check off). ``[runtime]`` holds :class:`mw.MwConfig` overrides, ``[targets]`` the verdict's thresholds,
which start at the checklist's and may only be tightened. The bundled scenarios live in ``simulations/scenarios/``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mw import MwConfig
from simulations.settings import resolve

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written (the message names the file and the key)."""


@dataclass(frozen=True)
class RunSpec:
    agents: int = 100
    nodes: int = 4
    duration_s: float = 3600.0
    warmup_s: float = 300.0
    """Hit ratios are measured after this much simulated time (caches start cold)."""
    seed: int = 42
    sample_s: float = 30.0
    """Interval of the time series (hit ratios, Mlt QPS, L0 size) and of the L2 double-prefix scan."""
    baseline: bool = True
    """Also run the same workload with caching disabled (``MW_ENABLED=false``) for the Mlt query reduction."""


@dataclass(frozen=True)
class LatencySpec:
    """Simulated Mlt query latency: ``fixed`` (``median_ms``), ``lognormal`` (median and p99) or ``none``."""

    dist: str = "lognormal"
    median_ms: float = 4.0
    p99_ms: float = 40.0


VALUE_DISTS = ("uniform", "lognormal")
VALUE_CONTENTS = ("repeated", "random")
VALUE_BYTES_CAP = 512 * 1024
"""The largest item size drawn: half the runtime's default ``MW_MAX_VALUE_BYTES`` (a lognormal tail has no end)."""


@dataclass(frozen=True)
class ItemsSpec:
    """Typed item reads with Zipf popularity over a catalog whose hot set drifts, and writes through the typed API.

    Agents are not web clients: each works on a handful of items at a time (its focus, drawn from the same Zipf
    popularity) and reads them again and again; that is what an agent's L0 is for.
    """

    kind: str = "doc"
    scope: str = "shared"
    catalog: int = 5000
    zipf_alpha: float = 1.0
    reads_per_agent_s: float = 2.0
    write_fraction: float = 0.01
    write_popularity: str = "uniform"
    """Which items writes hit: ``uniform`` over the catalog, or ``zipf`` (the read popularity: hot items churn)."""
    focus_fraction: float = 0.5
    """Share of reads for the agent's current focus: a few items it works on, re-drawn every ``focus_every_s``."""
    focus_size: int = 16
    focus_every_s: float = 300.0
    absent_fraction: float = 0.02
    """Share of reads for ids Mlt does not have (what the negative cache is for)."""
    absent_pool: int = 200
    value_bytes_min: int = 200
    value_bytes_max: int = 2000
    """With ``value_dist = "uniform"`` (the default), each item's size is drawn uniformly between these."""
    value_dist: str = "uniform"
    """Item sizes: ``uniform`` (``value_bytes_min`` to ``value_bytes_max``) or ``lognormal`` (``value_bytes_median``,
    ``value_bytes_p99``; draws are clipped to 1 byte .. :data:`VALUE_BYTES_CAP`), as production sizes are."""
    value_bytes_median: int = 1024
    value_bytes_p99: int = 65536
    value_content: str = "repeated"
    """What a value holds after its version: ``repeated`` (one character: zlib shrinks it to almost nothing, which
    does not matter for small values under the codec's threshold) or ``random`` (seeded base64 text: zlib saves about
    a quarter, so the tiers hold close to the nominal sizes)."""
    drift_every_s: float = 300.0
    drift_step: int = 50
    """Every ``drift_every_s`` the popularity ranking shifts by this many items: new keys become hot."""
    invalidation_delay_s: float = 0.0
    """Simulated time from a write's Mlt commit to its write-through reaching the caches (a writer in another
    process, heard over the bus). 0: at once, judged with tolerance 0; otherwise with ``truth.BUS_LAG_S``."""

    def __post_init__(self) -> None:
        if self.value_dist not in VALUE_DISTS:
            raise ScenarioError(f"value_dist = {self.value_dist!r}: one of {', '.join(VALUE_DISTS)}")
        if self.value_content not in VALUE_CONTENTS:
            raise ScenarioError(f"value_content = {self.value_content!r}: one of {', '.join(VALUE_CONTENTS)}")
        if self.value_dist == "uniform":
            names: tuple[str, ...] = ("value_bytes_min", "value_bytes_max")
        else:
            names = ("value_bytes_median", "value_bytes_p99")
        low, high = (getattr(self, name) for name in names)
        for name, value in zip(names, (low, high), strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= VALUE_BYTES_CAP:
                raise ScenarioError(f"{name} = {value!r}: a whole number of bytes from 0 to {VALUE_BYTES_CAP}")
        if low > high or (self.value_dist == "lognormal" and low < 1):
            lowest = 0 if self.value_dist == "uniform" else 1
            raise ScenarioError(
                f"{names[0]} = {low!r}, {names[1]} = {high!r}: need {lowest} <= {names[0]} <= {names[1]}"
            )


@dataclass(frozen=True)
class TasksSpec:
    """The task lifecycle: created -> queued -> running -> completed | failed | retry (-> queued)."""

    enabled: bool = True
    create_per_agent_s: float = 0.005
    """New tasks per agent per simulated second (Poisson, fleet-wide rate scales with the live agents)."""
    reads_per_agent_s: float = 0.3
    """Task status reads per agent per second (agents watching tasks)."""
    dwell_created_s: float = 2.0
    dwell_queued_s: float = 5.0
    dwell_running_s: float = 30.0
    p_failed: float = 0.05
    p_retry: float = 0.1
    max_retries: int = 2
    lease_s: float = 60.0
    retry_backoff_s: float = 10.0
    recent_finished: int = 500
    """Finished tasks stay readable: reads pick among the live ones and this many recently finished."""
    invalidation_delay_s: float = 0.0
    """Simulated time from a status change in Mlt to its ``invalidate_task`` (the task's worker in another process,
    heard over the bus). 0: at once, judged with tolerance 0; otherwise with ``truth.BUS_LAG_S``."""


@dataclass(frozen=True)
class HerdSpec:
    """A few hot keys with a short TTL, read by everyone, plus a herd that arrives exactly when they expire."""

    enabled: bool = False
    keys: int = 5
    ttl_s: float = 20.0
    reads_per_agent_s: float = 0.5
    at_expiry: int = 50
    """Agents that read a hot key at the instant its cached value expires."""
    spread_ms: float = 5.0


@dataclass(frozen=True)
class BurstSpec:
    every_s: float = 0.0
    """0: no bursts."""
    length_s: float = 30.0
    factor: float = 3.0


@dataclass(frozen=True)
class ChurnSpec:
    every_s: float = 0.0
    """0: agents never leave. Otherwise every ``every_s`` a fraction leaves and as many cold agents join."""
    fraction: float = 0.05


@dataclass(frozen=True)
class PrewarmSpec:
    every_s: float = 0.0
    """0: no prewarming. Otherwise every agent calls ``prewarm(top_n)`` this often."""
    top_n: int = 10
    compare: bool = False
    """Also run without prewarming to measure its effect: on the hit ratio, and on the hot keys' reads and loads."""
    hot_keys: int = 10
    """With ``compare``: how many keys are the hot keys judged, the cached run's most read by the simulator's count."""

    def __post_init__(self) -> None:
        if isinstance(self.hot_keys, bool) or not isinstance(self.hot_keys, int) or self.hot_keys < 1:
            raise ScenarioError(f"hot_keys = {self.hot_keys!r}: a whole number of keys, at least 1")


@dataclass(frozen=True)
class HeartbeatSpec:
    every_s: float = 30.0


MIX_OPERATIONS = ("get_item_typed", "get_many_typed", "get_or_load", "del_global_item_typed", "del_global_key")
"""The item operations of an agent that ``[mix]`` weighs (its writes are ``[items] write_fraction``)."""
TASK_UPDATES = ("put_task", "update_task_status")


@dataclass(frozen=True)
class MixSpec:
    """How an agent's item requests that are not writes split over the runtime's API: relative weights.

    The default is every such request a read by key (``begin_load``, the split-phase ``get_item_typed``), as before
    the table existed: a run without ``[mix]`` draws the same random numbers and gets the same result.
    """

    get_item_typed: float = 1.0
    get_many_typed: float = 0.0
    """A batch of ``batch_size`` distinct ids in one ``get_many_typed``; what it leaves out is then read by key."""
    get_or_load: float = 0.0
    """A read by key whose fill gets the caller's ``get_or_load_ttl_s``."""
    del_global_item_typed: float = 0.0
    """Mlt's ``delete_item``, then ``del_global_item_typed`` (a write later re-creates the item)."""
    del_global_key: float = 0.0
    """As ``del_global_item_typed``, through ``del_global_key`` with the item's full key."""
    batch_size: int = 8
    get_or_load_ttl_s: float = 60.0
    task_updates: str = "put_task"
    """How a task changes status: ``put_task`` (the simulator's Mlt write, then ``invalidate_task``) or
    ``update_task_status`` (the owner's ``MwManager.update_task_status``: both in one public call)."""

    def __post_init__(self) -> None:
        for name in MIX_OPERATIONS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ScenarioError(f"{name} = {value!r}: a weight is a number >= 0")
        if not any(getattr(self, name) for name in MIX_OPERATIONS):
            raise ScenarioError(f"every weight is 0: at least one of {', '.join(MIX_OPERATIONS)} must be > 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ScenarioError(f"batch_size = {self.batch_size!r}: a whole number of ids >= 1")
        ttl = self.get_or_load_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < float("inf"):
            raise ScenarioError(f"get_or_load_ttl_s = {ttl!r}: a number of seconds > 0")
        if self.task_updates not in TASK_UPDATES:
            raise ScenarioError(f"task_updates = {self.task_updates!r} is not one of {', '.join(TASK_UPDATES)}")

    @property
    def by_key_only(self) -> bool:
        """Only reads by key: no draw picks the operation (the result of a scenario without ``[mix]``)."""
        return not any(getattr(self, name) for name in MIX_OPERATIONS[1:])

    def weights(self) -> list[tuple[str, float]]:
        """The operations with a weight, each with its cumulative share of 1."""
        total = sum(getattr(self, name) for name in MIX_OPERATIONS)
        out, acc = [], 0.0
        for name in MIX_OPERATIONS:
            weight = getattr(self, name)
            if weight:
                acc += weight / total
                out.append((name, acc))
        out[-1] = (out[-1][0], 1.0)
        return out


@dataclass(frozen=True)
class DefectSpec:
    """Deliberate defects, for proving the verdict fails: never on in a bundled scenario."""

    double_prefix_writer: bool = False
    mark_present_absent: bool = False
    """Buggy user code: every ``every_s`` drops a popular present item and marks it absent (``set_negative_cache``
    without asking the store)."""
    skip_invalidation: bool = False
    """Writers change Mlt and never tell the caches (no write-through, no ``invalidate_task``)."""
    absent_on_mlt_error: bool = False
    """A loader that takes an Mlt error for "not found" (returns ``None``): the negative cache then records an
    absence the database never said (an ``mlt_down`` window shows it)."""
    every_s: float = 60.0


FAULT_KINDS = {
    "l2_down": "Redis down",
    "l2_slow": "Redis slow",
    "mlt_down": "Mlt down",
    "agent_crash": "agents crash",
    "pubsub_dropped": "bus messages dropped",
    "l2_failover": "L2 primary killed",
    "l2_reshard": "cluster slots moving",
}
"""``[[faults]]`` kinds the simulator applies in simulated time, and how reports name them."""
FAULT_MODES = ("pause", "kill")
"""``mode`` of a real ``l2_down`` or ``mlt_down``."""
FAULT_KINDS_LATER: tuple[str, ...] = ()
"""Kinds of the issue's list not applied yet: refused by name rather than silently ignored."""


@dataclass(frozen=True)
class FaultWindow:
    """One ``[[faults]]`` entry: at simulated ``at_s``, for ``for_s`` seconds, the fault ``kind``.

    ``delay_ms`` (``l2_slow`` only, required there): what each L2 round trip costs in the window.
    ``agents`` (``agent_crash`` only, default 1): how many agents die at ``at_s``; as many join at ``end_s``.
    ``mode`` (``l2_down`` and ``mlt_down``, default ``pause``): how the fault is applied for real (``--realtime`` on a
    server the run started, :mod:`simulations.real_faults`): ``pause`` stops the server (SIGSTOP, or the engine's
    pause), ``kill`` kills it and starts it again at ``end_s`` (Redis empty; PostgreSQL after crash recovery, its rows
    kept). In simulated time both are the seam's outage.
    """

    kind: str
    at_s: float
    for_s: float
    delay_ms: float | None = None
    agents: int | None = None
    mode: str | None = None

    @property
    def end_s(self) -> float:
        return self.at_s + self.for_s

    @property
    def crashes(self) -> int:
        """How many agents an ``agent_crash`` kills (its ``agents``, default 1)."""
        return 1 if self.agents is None else self.agents

    def __post_init__(self) -> None:
        if self.kind in FAULT_KINDS_LATER:
            raise ScenarioError(f"kind = {self.kind!r} is not applied by the simulator yet ({', '.join(FAULT_KINDS)})")
        if self.kind not in FAULT_KINDS:
            raise ScenarioError(f"kind = {self.kind!r} is not a fault kind ({', '.join(FAULT_KINDS)})")
        for name in ("at_s", "for_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ScenarioError(f"{name} = {value!r}: a number of simulated seconds >= 0")
        delay = self.delay_ms
        if self.kind == "l2_slow":
            if delay is None:
                raise ScenarioError("kind = 'l2_slow' needs delay_ms (what each L2 round trip costs)")
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay > 0:
                raise ScenarioError(f"delay_ms = {delay!r}: a number of milliseconds > 0")
        elif delay is not None:
            raise ScenarioError(f"delay_ms = {delay!r} applies to kind = 'l2_slow' only, not {self.kind!r}")
        agents = self.agents
        if self.kind == "agent_crash":
            if agents is not None and (isinstance(agents, bool) or not isinstance(agents, int) or agents < 1):
                raise ScenarioError(f"agents = {agents!r}: a whole number of agents >= 1")
        elif agents is not None:
            raise ScenarioError(f"agents = {agents!r} applies to kind = 'agent_crash' only, not {self.kind!r}")
        mode = self.mode
        if mode is not None:
            if self.kind not in ("l2_down", "mlt_down"):
                raise ScenarioError(
                    f"mode = {mode!r} applies to kind = 'l2_down' or 'mlt_down' only, not {self.kind!r}"
                )
            if mode not in FAULT_MODES:
                raise ScenarioError(f"mode = {mode!r}: one of {', '.join(map(repr, FAULT_MODES))}")

    @property
    def how(self) -> str:
        """``pause`` or ``kill``: how a real ``l2_down`` or ``mlt_down`` is applied."""
        return self.mode or "pause"


@dataclass(frozen=True)
class Targets:
    """The checklist's targets, always judged. A scenario's ``[targets]`` may only make them stricter: a looser
    value, or ``false`` on a check, is a :class:`ScenarioError` naming the key, its value and the checklist's."""

    hit_ratio_week1: float = 0.70
    """Success Metrics, Week 1: hit ratio > 70 %."""
    hit_ratio_week2: float | None = None
    """Week 2+: hit ratio > 80 %; judged when a scenario states it (then at least 0.80)."""
    running_ttl_max_s: float = 30.0
    """The checklist's ``MW_TASK_TTL_RUNNING_S=30``: no running task is served from a cache longer."""
    no_double_prefix: bool = True
    heartbeats: bool = True
    l0_max_items: int = MwConfig.l0_max_items
    """The scenario's memory budget per agent's L0 (items); the runtime's default bound unless it states less."""
    l0_max_bytes: int = MwConfig.l0_max_bytes
    max_loads_per_key_per_expiry: int = 1
    max_stale_reads: int = 0

    def __post_init__(self) -> None:
        for name, floor in CHECKLIST_TARGETS.items():
            value = getattr(self, name)
            if name == "hit_ratio_week2" and value is None:
                continue
            if value is None or value is False:
                raise ScenarioError(f"{name} = false: the checklist's target ({floor!r}) cannot be turned off")
            if isinstance(floor, bool):
                stricter, bound = value is True, "true"
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScenarioError(f"{name} = {value!r} is not a number")
            elif name in _AT_LEAST:
                stricter, bound = value >= floor, f"at least {floor!r}"
            else:
                stricter, bound = value <= floor, f"at most {floor!r}"
            if not stricter:
                raise ScenarioError(
                    f"{name} = {value!r} loosens the checklist's target: it may only be tightened ({bound})"
                )


CHECKLIST_TARGETS: dict[str, float | int | bool] = {
    "hit_ratio_week1": 0.70,
    "hit_ratio_week2": 0.80,
    "running_ttl_max_s": 30.0,
    "no_double_prefix": True,
    "heartbeats": True,
    "l0_max_items": MwConfig.l0_max_items,
    "l0_max_bytes": MwConfig.l0_max_bytes,
    "max_loads_per_key_per_expiry": 1,
    "max_stale_reads": 0,
}
"""The fixed targets (the checklist's, and the runtime's default L0 bound as the largest memory budget)."""
_AT_LEAST = {"hit_ratio_week1", "hit_ratio_week2"}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    source: str = ""
    informational: bool = False
    """The verdict informs and does not gate: ``mw-sim run`` exits 0 when a check fails (the rows still say FAIL)."""
    run: RunSpec = field(default_factory=RunSpec)
    runtime: dict[str, Any] = field(default_factory=dict)
    mlt: LatencySpec = field(default_factory=LatencySpec)
    items: ItemsSpec = field(default_factory=ItemsSpec)
    tasks: TasksSpec = field(default_factory=TasksSpec)
    herd: HerdSpec = field(default_factory=HerdSpec)
    bursts: BurstSpec = field(default_factory=BurstSpec)
    churn: ChurnSpec = field(default_factory=ChurnSpec)
    prewarm: PrewarmSpec = field(default_factory=PrewarmSpec)
    heartbeat: HeartbeatSpec = field(default_factory=HeartbeatSpec)
    mix: MixSpec = field(default_factory=MixSpec)
    defects: DefectSpec = field(default_factory=DefectSpec)
    targets: Targets = field(default_factory=Targets)
    faults: tuple[FaultWindow, ...] = ()

    def config(self, environ: Mapping[str, str] | None = None, **extra: Any) -> MwConfig:
        """This scenario's runtime configuration: ``MW_*`` in ``environ`` (default ``os.environ``) over ``[runtime]``,
        then ``extra`` (backend URLs, broken settings). Runs layer their own settings with
        :func:`simulations.settings.for_run`, which also says where each value came from."""
        return resolve(self.runtime, overrides=extra, environ=environ).config

    def with_overrides(self, **sections: dict[str, Any]) -> Scenario:
        """A copy with some fields of some tables replaced, e.g. ``with_overrides(run={"agents": 10})``."""
        changes: dict[str, Any] = {}
        for section, values in sections.items():
            if not values:
                continue
            if section == "runtime":
                changes["runtime"] = {**self.runtime, **values}
                continue
            current = getattr(self, section)
            where = self.source or self.name
            _check_keys(where, section, values, type(current))
            try:
                changes[section] = dataclasses.replace(current, **values)
            except ScenarioError as exc:
                raise ScenarioError(f"{where}: [{section}] {exc}") from None
        changed = dataclasses.replace(self, **changes)
        _check_mix(self.source or self.name, changed)
        return changed


_SECTIONS: dict[str, type[Any]] = {
    "run": RunSpec,
    "mlt": LatencySpec,
    "items": ItemsSpec,
    "tasks": TasksSpec,
    "herd": HerdSpec,
    "bursts": BurstSpec,
    "churn": ChurnSpec,
    "prewarm": PrewarmSpec,
    "heartbeat": HeartbeatSpec,
    "mix": MixSpec,
    "defects": DefectSpec,
    "targets": Targets,
}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(MwConfig)}


def _check_keys(where: str, section: str, values: dict[str, Any], cls: type[Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ScenarioError(f"{where}: [{section}] has no setting {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _section(where: str, name: str, raw: Any) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: [{name}] must be a table")
    _check_keys(where, name, raw, cls)
    try:
        return cls(**raw)
    except ScenarioError as exc:
        raise ScenarioError(f"{where}: [{name}] {exc}") from None


def _faults(where: str, raw: Any, runtime: dict[str, Any]) -> tuple[FaultWindow, ...]:
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ScenarioError(f"{where}: faults must be an array of tables ([[faults]])")
    windows = []
    for n, entry in enumerate(raw, 1):
        _check_keys(where, f"[faults] #{n}", entry, FaultWindow)
        try:
            windows.append(FaultWindow(**entry))
        except TypeError as exc:
            raise ScenarioError(f"{where}: [[faults]] #{n}: {exc}") from None
        except ScenarioError as exc:
            raise ScenarioError(f"{where}: [[faults]] #{n}: {exc}") from None
    if windows and runtime.get("tier_retry_s") != 0:
        # The tier's retry window runs on the wall clock: in simulated time it would stretch a fault by an amount
        # that depends on the machine's speed. With 0 every call tries again, so a fault ends when its window does.
        raise ScenarioError(f"{where}: [[faults]] need [runtime] tier_retry_s = 0 (the retry window is wall time)")
    return tuple(windows)


def _check_mix(where: str, scenario: Scenario) -> None:
    """``update_task_status`` invalidates at once: it cannot be the late writer ``invalidation_delay_s`` models."""
    delay = scenario.tasks.invalidation_delay_s
    if scenario.mix.task_updates == "update_task_status" and delay > 0:
        raise ScenarioError(
            f"{where}: [mix] task_updates = 'update_task_status' invalidates at once; "
            f"[tasks] invalidation_delay_s = {delay!r} needs task_updates = 'put_task'"
        )


def parse_scenario(data: dict[str, Any], source: str = "<memory>") -> Scenario:
    """Build a scenario from parsed TOML; every problem is a :class:`ScenarioError` naming ``source`` and the key."""
    if "name" not in data or not isinstance(data["name"], str):
        raise ScenarioError(f'{source}: a scenario needs a top-level name = "..."')
    unknown = sorted(set(data) - {"name", "description", "informational", "runtime", "faults", *_SECTIONS})
    if unknown:
        raise ScenarioError(f"{source}: unknown table or key {unknown[0]!r}")
    informational = data.get("informational", False)
    if not isinstance(informational, bool):
        raise ScenarioError(f"{source}: informational = {informational!r}: true or false")
    runtime = dict(data.get("runtime", {}))
    bad = sorted(set(runtime) - _CONFIG_FIELDS)
    if bad:
        raise ScenarioError(f"{source}: [runtime] {bad[0]!r} is not an MwConfig setting")
    kwargs: dict[str, Any] = {"name": data["name"], "description": data.get("description", ""), "source": source}
    kwargs["informational"] = informational
    kwargs["runtime"] = runtime
    kwargs["faults"] = _faults(source, data.get("faults", []), runtime)
    for name in _SECTIONS:
        if name in data:
            kwargs[name] = _section(source, name, data[name])
    scenario = Scenario(**kwargs)
    _check_mix(source, scenario)
    try:
        scenario.config(environ={})  # the file alone: an MW_* variable is the run's business, not the file's
    except Exception as exc:
        raise ScenarioError(f"{source}: [runtime] {exc}") from exc
    return scenario


def bundled() -> dict[str, Path]:
    """The scenarios shipped with the package, by name."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by file path, or by the name of a bundled one (``staging-synthetic``)."""
    path = Path(name_or_path)
    if not path.exists():
        found = bundled().get(path.stem if path.suffix == ".toml" else str(name_or_path))
        if found is None:
            names = ", ".join(bundled())
            raise ScenarioError(
                f"no scenario file {str(name_or_path)!r} and no bundled scenario of that name ({names})"
            )
        path = found
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    return parse_scenario(data, str(path))
