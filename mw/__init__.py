"""Mw: multi-tier working memory for agent systems.

L0 per agent (in process) -> L1 per node -> L2 cluster-wide (Redis) -> Mlt, the long-term store.
"""

from __future__ import annotations

from typing import Any

from mw.clock import Clock, ManualClock, system_clock
from mw.cluster import close_all, live_l0s, live_l1s
from mw.config import MwConfig
from mw.errors import CodecError, ConfigError, KeyGrammarError, MwError, TaskRowError, ValueTooLargeError
from mw.manager import MwManager
from mw.telemetry import memory_metrics as _memory_metrics
from mw.telemetry import process_telemetry

__version__ = "0.1.0"


def process_memory_metrics(top_n: int = 10) -> dict[str, Any]:
    """The heartbeat fields summed over every manager in this process."""
    counters = process_telemetry.counters()
    l0s = live_l0s()
    l1s = live_l1s()
    counters["l0_evictions"] = sum(l0.evictions for l0 in l0s)
    return _memory_metrics(
        counters,
        process_telemetry.hot(top_n * 2),
        enabled=True,
        l0_items=sum(len(l0) for l0 in l0s),
        l0_bytes=sum(l0.nbytes for l0 in l0s),
        l0_max_items=sum(l0.max_items for l0 in l0s),
        l0_max_bytes=sum(l0.max_bytes or 0 for l0 in l0s),
        l1_items=sum(len(l1) for l1 in l1s),
        l1_bytes=sum(l1.nbytes for l1 in l1s),
        top_n=top_n,
    )


__all__ = [
    "Clock",
    "CodecError",
    "ConfigError",
    "KeyGrammarError",
    "ManualClock",
    "MwConfig",
    "MwError",
    "MwManager",
    "TaskRowError",
    "ValueTooLargeError",
    "__version__",
    "close_all",
    "process_memory_metrics",
    "system_clock",
]
