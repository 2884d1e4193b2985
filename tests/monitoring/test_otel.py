"""The OpenTelemetry export, read with the SDK's in-memory reader: the Prometheus export's names, labels
and values, moving with the runtime; histograms record from the moment they are instrumented."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mw import MwManager
from mw.metric_families import SPECS

pytest.importorskip("opentelemetry.sdk.metrics", reason="needs the [otel] extra (opentelemetry-sdk)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mw import otel

Make = Callable[..., MwManager]
Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    made = otel.instrument(provider)
    yield reader
    made.close()
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> tuple[set[str], Points]:
    names: set[str] = set()
    out: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "mw"
            for metric in scope.metrics:
                names.add(metric.name)
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    out[key] = point.count if hasattr(point, "bucket_counts") else point.value
    return names, out


def test_same_names_as_prometheus_and_values_move(make_manager: Make, reader: InMemoryMetricReader) -> None:
    a = make_manager("a")
    _, before = points(reader)
    a.set_global_item_typed("doc", "s", "1", {"v": 1})
    for _ in range(3):
        a.get_item_typed("doc", "s", "1")
    a.get_item_typed("doc", "s", "absent")
    a.cache_task_row({"id": 1, "status": "running"})
    a.set_global_item_typed("task", "by_id", "2", {"id": 2, "status": "running"}, ttl_s=3600)
    names, after = points(reader)

    def moved(name: str, **labels: str) -> Any:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    histograms = {s.name for s in SPECS if s.kind == "histogram"}
    assert {s.name for s in SPECS} - histograms - {"mw_hot_item_reads"} <= names
    assert "mw_task_cache_ttl_seconds" in names, "recorded since instrument()"
    assert moved("mw_hits_total", tier="l0") == 3 and moved("mw_misses_total") == 1
    assert moved("mw_loads_total", source="mlt") == 1
    assert moved("mw_task_cache_ttl_seconds", status="running") == 2
    assert moved("mw_task_ttl_exceeded_total", status="running") == 1
    assert after[("mw_hot_item_reads", frozenset({("item", "doc:s:1")}))] >= 3
    assert 0.0 < after[("mw_hit_ratio", frozenset())] < 1.0


def test_closing_detaches_the_histograms(make_manager: Make) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    made = otel.instrument(provider)
    made.close()
    make_manager("a").cache_task_row({"id": 1, "status": "queued"})
    names, _ = points(reader)
    assert "mw_task_cache_ttl_seconds" not in names
    provider.shutdown()


def test_top_n_must_be_positive() -> None:
    with pytest.raises(ValueError, match="top_n"):
        otel.instrument(MeterProvider(), top_n=0)
