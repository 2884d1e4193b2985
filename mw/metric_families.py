"""The metric families this process exports, read from its live agents, neutral of any client library.

:mod:`mw.metrics` (Prometheus) and :mod:`mw.otel` (OpenTelemetry) both render :func:`collect`, so the two
exports cannot drift: same names, same labels, same values. Counters are cumulative since the process
started (a closed agent's counts are kept), so an alert takes ``rate()`` over a window; a cumulative ratio
such as ``mw_hit_ratio`` (the heartbeat's) cannot show a drop.

Label values are bounded: ``tier`` and ``source`` are fixed sets, ``status`` is one of the configured task
statuses or ``other``, and ``item`` (hot items) names at most ``top_n`` items per collection. No label
carries a URL, a DSN or anything else from the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from mw.cluster import Cluster, live_clusters, live_l0s, live_l1s
from mw.telemetry import Histogram, hit_ratio, hot_list, invalidation_lag, process_telemetry, task_ttls


class HistogramValue(NamedTuple):
    buckets: list[tuple[float, int]]
    """``(upper bound, cumulative count)``, the last bound ``inf``."""
    sum: float
    observations: int


class Spec(NamedTuple):
    name: str
    """The Prometheus name (counters end in ``_total``); OpenTelemetry instruments get the same."""
    kind: str
    """``counter``, ``gauge`` or ``histogram``."""
    help: str
    unit: str
    """The OpenTelemetry unit (UCUM): ``1``, ``s``, ``By``, ``{item}``..."""
    labels: tuple[str, ...] = ()


@dataclass
class Family:
    spec: Spec
    samples: list[tuple[tuple[str, ...], float | HistogramValue]] = field(default_factory=list)


def _c(name: str, help: str, unit: str = "1", labels: tuple[str, ...] = ()) -> Spec:
    return Spec(name, "counter", help, unit, labels)


def _g(name: str, help: str, unit: str = "1", labels: tuple[str, ...] = ()) -> Spec:
    return Spec(name, "gauge", help, unit, labels)


SPECS: tuple[Spec, ...] = (
    _c("mw_hits_total", "Reads answered by a tier (l0: the agent, l1: the node, l2: Redis).", labels=("tier",)),
    _c("mw_misses_total", "Reads no tier answered (they load, or return None without a loader)."),
    _g("mw_hit_ratio", "Hits / (hits + misses) since the process started (the heartbeat's mw_hit_ratio)."),
    _c("mw_negative_cache_hits_total", "Reads answered 'absent' by the negative cache."),
    _c("mw_task_cache_hits_total", "get_task calls answered from the cache."),
    _c("mw_task_cache_misses_total", "get_task calls that went to Mlt's task table (or waited for a load)."),
    _c("mw_task_evictions_total", "Task rows invalidated (invalidate_task, update_task_status)."),
    _c("mw_evictions_total", "Entries evicted by the size bounds of L0 (agents) and L1 (nodes).", labels=("tier",)),
    _c("mw_loads_total", "Loads run by this process: mlt (Mlt's tables) or loader (the caller's).", labels=("source",)),
    _c("mw_repeated_loads_total", "Loads of a key whose previous load's value was still within its TTL."),
    _c("mw_lease_waits_total", "Misses that waited for another caller's lease (cluster-wide single flight)."),
    _c("mw_lease_rechecks_total", "Lease holders that found the value already landed (check-after-lock)."),
    _c("mw_lease_extensions_total", "Lease extensions while a slow loader ran."),
    _c("mw_coalesced_total", "Reads served by another caller's load in this process (single flight)."),
    _c("mw_stale_fills_refused_total", "Fills refused because the key was invalidated while it loaded."),
    _c("mw_early_refreshes_total", "XFetch refreshes of hot keys before they expired."),
    _c("mw_prewarmed_total", "Hot items whose node copies prewarm() refilled."),
    _c("mw_tier_errors_total", "Errors of a shared tier (l2: Redis, mlt: the long-term store).", labels=("tier",)),
    _c("mw_l2_write_failures_total", "Writes, fills and deletes that could not reach Redis."),
    _c("mw_corrupt_entries_total", "Cache entries that could not be decoded (served as misses)."),
    _c("mw_uncacheable_total", "Loaded values returned but not cached (too large, refused by the codec)."),
    _c("mw_load_timeouts_total", "Reads that gave up waiting for another caller's load (MW_LOAD_TIMEOUT_S)."),
    _c("mw_invalidations_received_total", "Invalidation messages received from other processes (open clusters)."),
    _c("mw_invalidation_flushes_total", "Local tiers flushed because an invalidation may have been missed."),
    Spec(
        "mw_invalidation_lag_seconds",
        "histogram",
        "Send-to-apply lag of invalidations received from other processes.",
        "s",
    ),
    _g("mw_agents", "Live agents (managers) in this process."),
    _g("mw_l0_items", "Entries in every agent's L0."),
    _g("mw_l0_bytes", "Estimated memory of every agent's L0 entries.", "By"),
    _g("mw_l0_max_items", "The sum of the agents' L0 item bounds (MW_L0_MAX_ITEMS each)."),
    _g("mw_l0_max_bytes", "The sum of the agents' L0 byte bounds (MW_L0_MAX_BYTES each; 0: none).", "By"),
    _g("mw_l1_items", "Entries in this process's node tiers."),
    _g("mw_l1_bytes", "Bytes held by this process's node tiers.", "By"),
    _g("mw_l1_max_items", "The sum of the node tiers' item bounds (MW_L1_MAX_ITEMS each)."),
    _g("mw_l1_max_bytes", "The sum of the node tiers' byte bounds (MW_L1_MAX_BYTES each; 0: none).", "By"),
    _g("mw_task_ttl_limit_seconds", "MW_TASK_TTL_{STATUS}_S of the live configurations (longest).", "s", ("status",)),
    Spec(
        "mw_task_cache_ttl_seconds",
        "histogram",
        "TTLs this process cached task rows with, by the row's status.",
        "s",
        ("status",),
    ),
    _c("mw_task_ttl_exceeded_total", "Task rows cached with a TTL over their status's TTL.", labels=("status",)),
    _g(
        "mw_hot_item_reads",
        "Reads counted for the process's hottest items (top N; decayed with MW_HOT_ITEMS_HALF_LIFE_S).",
        "{read}",
        ("item",),
    ),
)

SPEC_BY_NAME = {s.name: s for s in SPECS}


def collect(top_n: int = 10) -> list[Family]:
    """Every family of :data:`SPECS`, in that order, with the process's current values."""
    c = process_telemetry.counters()
    l0s, l1s, clusters = live_l0s(), live_l1s(), live_clusters()
    buses = [b for b in (cl.started_bus for cl in clusters) if b is not None]
    lag_buckets, lag_sum, lag_count = invalidation_lag.snapshot()
    values: dict[str, list[tuple[tuple[str, ...], float | HistogramValue]]] = {
        "mw_hits_total": [(("l0",), c["l0_hits"]), (("l1",), c["l1_hits"]), (("l2",), c["l2_hits"])],
        "mw_misses_total": [((), c["misses"])],
        "mw_hit_ratio": [((), hit_ratio(c["hits"], c["misses"]))],
        "mw_negative_cache_hits_total": [((), c["negative_cache_hits"])],
        "mw_task_cache_hits_total": [((), c["task_cache_hits"])],
        "mw_task_cache_misses_total": [((), c["task_cache_misses"])],
        "mw_task_evictions_total": [((), c["task_evictions"])],
        "mw_evictions_total": [
            (("l0",), c["l0_evictions"] + sum(l0.evictions for l0 in l0s)),
            (("l1",), sum(l1.evictions for l1 in l1s)),
        ],
        "mw_loads_total": [(("mlt",), c["mlt_loads"]), (("loader",), c["loader_calls"])],
        "mw_repeated_loads_total": [((), c["repeated_loads"])],
        "mw_lease_waits_total": [((), c["lease_waits"])],
        "mw_lease_rechecks_total": [((), c["lease_rechecks"])],
        "mw_lease_extensions_total": [((), c["lease_extensions"])],
        "mw_coalesced_total": [((), c["coalesced"])],
        "mw_stale_fills_refused_total": [((), c["stale_sets_prevented"])],
        "mw_early_refreshes_total": [((), c["early_refreshes"])],
        "mw_prewarmed_total": [((), c["prewarmed"])],
        "mw_tier_errors_total": [(("l2",), c["l2_errors"]), (("mlt",), c["mlt_errors"])],
        "mw_l2_write_failures_total": [((), c["l2_write_failures"])],
        "mw_corrupt_entries_total": [((), c["corrupt_entries"])],
        "mw_uncacheable_total": [((), c["uncacheable"])],
        "mw_load_timeouts_total": [((), c["load_timeouts"])],
        "mw_invalidations_received_total": [((), sum(b.received for b in buses))],
        "mw_invalidation_flushes_total": [((), sum(b.flushes for b in buses))],
        "mw_invalidation_lag_seconds": [((), HistogramValue(lag_buckets, lag_sum, lag_count))],
        "mw_agents": [((), process_telemetry.live_count())],
        "mw_l0_items": [((), sum(len(l0) for l0 in l0s))],
        "mw_l0_bytes": [((), sum(l0.nbytes for l0 in l0s))],
        "mw_l0_max_items": [((), sum(l0.max_items for l0 in l0s))],
        "mw_l0_max_bytes": [((), sum(l0.max_bytes or 0 for l0 in l0s))],
        "mw_l1_items": [((), sum(len(l1) for l1 in l1s))],
        "mw_l1_bytes": [((), sum(l1.nbytes for l1 in l1s))],
        "mw_l1_max_items": [((), sum(l1.max_items for l1 in l1s))],
        "mw_l1_max_bytes": [((), sum(l1.max_bytes or 0 for l1 in l1s))],
        "mw_task_ttl_limit_seconds": _ttl_limits(clusters),
        "mw_task_cache_ttl_seconds": [
            ((status,), HistogramValue(*task_ttls.ttls[status].snapshot())) for status in task_ttls.statuses
        ],
        "mw_task_ttl_exceeded_total": [((status,), task_ttls.exceeded[status]) for status in task_ttls.statuses],
        "mw_hot_item_reads": [((name,), count) for name, count in hot_list(process_telemetry.hot(top_n * 2), top_n)],
    }
    return [Family(spec, values[spec.name]) for spec in SPECS]


def _ttl_limits(clusters: list[Cluster]) -> list[tuple[tuple[str, ...], float | HistogramValue]]:
    configs = {cl.config for cl in clusters}
    if not configs:
        return []
    out: list[tuple[tuple[str, ...], float | HistogramValue]] = []
    for status in task_ttls.statuses[:-1]:
        out.append(((status,), max(cfg.task_ttl_s(status) for cfg in configs)))
    out.append(((task_ttls.statuses[-1],), max(cfg.task_ttl_s(None) for cfg in configs)))
    return out


def histograms() -> dict[str, list[tuple[tuple[str, ...], Histogram]]]:
    """The runtime's histograms behind each histogram family, with their label values (for push-style exports)."""
    return {
        "mw_invalidation_lag_seconds": [((), invalidation_lag)],
        "mw_task_cache_ttl_seconds": [((status,), task_ttls.ttls[status]) for status in task_ttls.statuses],
    }


def series_names() -> set[str]:
    """Every series name a Prometheus scrape shows (histograms as ``_bucket``, ``_sum``, ``_count``)."""
    out: set[str] = set()
    for spec in SPECS:
        if spec.kind == "histogram":
            out.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            out.add(spec.name)
    return out
