"""Prometheus metrics of the process's live agents: ``mw.metrics.serve(port)``, or register :class:`MwCollector`.

Needs the ``[prometheus]`` extra (``prometheus_client``). The collector reads the runtime's counters at
scrape time (nothing is recorded twice, nothing costs on the hit path); every family and label is listed
in :data:`mw.metric_families.SPECS` and in docs/monitoring.md, and the alert rules in
``deploy/prometheus/mw-alerts.yml`` are written against them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIServer

try:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("mw.metrics needs prometheus_client: pip install 'pytest-mw[prometheus]'") from exc

from mw.metric_families import Family, HistogramValue, collect

__all__ = ["MwCollector", "register", "serve"]


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class MwCollector(Collector):
    """Renders :func:`mw.metric_families.collect` as Prometheus metric families; ``top_n`` hot items."""

    def __init__(self, top_n: int = 10) -> None:
        if top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {top_n!r}")
        self.top_n = top_n
        self._frozen: list[Family] | None = None

    def freeze(self) -> None:
        """Answer every later scrape with the values of now.

        The gauges read live agents (L0/L1 sizes, bounds, hot items) and drop to zero once they are closed; a
        finished run (``mw-sim run --metrics-port``) freezes its collector before that, so the scrapes after the
        run still show its final figures, counters and gauges alike.
        """
        self._frozen = collect(self.top_n)

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def collect(self) -> Iterator[Metric]:
        families = self._frozen if self._frozen is not None else collect(self.top_n)
        for family in families:
            yield _render(family)


def _render(family: Family) -> Metric:
    spec = family.spec
    labels = list(spec.labels)
    if spec.kind == "histogram":
        hist = HistogramMetricFamily(spec.name, spec.help, labels=labels)
        for values, value in family.samples:
            assert isinstance(value, HistogramValue)
            hist.add_metric(list(values), [(_le(b), float(n)) for b, n in value.buckets], value.sum)
        return hist
    metric: CounterMetricFamily | GaugeMetricFamily
    if spec.kind == "counter":
        metric = CounterMetricFamily(spec.name, spec.help, labels=labels)
    else:
        metric = GaugeMetricFamily(spec.name, spec.help, labels=labels)
    for values, value in family.samples:
        assert not isinstance(value, HistogramValue)
        metric.add_metric(list(values), float(value))
    return metric


def register(registry: CollectorRegistry, top_n: int = 10) -> MwCollector:
    """Add the collector to ``registry`` (e.g. ``prometheus_client.REGISTRY`` an app already serves)."""
    collector = MwCollector(top_n)
    registry.register(collector)
    return collector


def serve(
    port: int,
    addr: str = "0.0.0.0",
    *,
    top_n: int = 10,
    extra: Iterable[Collector] = (),
    collector: MwCollector | None = None,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` from a thread (prometheus_client's HTTP server).

    Its own registry holds the collector (and ``extra`` collectors), so calling it twice never collides with
    ``prometheus_client.REGISTRY``. Port 0 picks a free port: ``server.server_port``. Stop it with
    ``server.shutdown()``. ``collector``: serve that one (e.g. one the caller freezes later) instead of a new
    ``MwCollector(top_n)``.
    """
    registry = CollectorRegistry()
    if collector is None:
        register(registry, top_n)
    else:
        registry.register(collector)
    for other in extra:
        registry.register(other)
    return start_http_server(port, addr, registry=registry)
