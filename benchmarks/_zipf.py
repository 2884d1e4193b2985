"""Seeded Zipf traces and libCacheSim oracleGeneral trace files for the L0 benchmarks."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

ORACLE_GENERAL = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next", "<i8")])
"""libCacheSim oracleGeneral record: packed little-endian ``<IQIq`` (24 bytes); next = -1 if none."""

assert ORACLE_GENERAL.itemsize == struct.calcsize("<IQIq") == 24


def zipf_trace(n_objects: int, n_requests: int, alpha: float, seed: int) -> np.ndarray:
    """Object ids 1..n_objects drawn with P(rank k) ~ 1/k**alpha (inverse-CDF sampling).

    Ranks are shuffled onto ids so that popularity is not correlated with id order.
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_objects + 1, dtype=np.float64) ** alpha
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n_requests), side="right")
    ranks = np.minimum(ranks, n_objects - 1)
    ids = rng.permutation(n_objects).astype(np.uint64) + 1
    return ids[ranks]


def next_access(trace: np.ndarray) -> np.ndarray:
    """For each request, the index of the next request to the same object, or -1."""
    order = np.argsort(trace, kind="stable")
    nxt = np.full(len(trace), -1, dtype=np.int64)
    same = trace[order[1:]] == trace[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def write_oracle_general(trace: np.ndarray, path: Path) -> Path:
    """Write ``trace`` (unit-size objects) as an oracleGeneral file that Belady can read."""
    rec = np.empty(len(trace), dtype=ORACLE_GENERAL)
    rec["clock_time"] = np.arange(len(trace), dtype=np.uint32)
    rec["obj_id"] = trace
    rec["obj_size"] = 1
    rec["next"] = next_access(trace)
    rec.tofile(path)
    return path
