"""OpenTelemetry metrics of the process's live agents, with the names, labels and values of :mod:`mw.metrics`.

Needs the ``[otel]`` extra (``opentelemetry-api``/``-sdk``). ``instrument(meter_provider)`` creates one
instrument per family of :data:`mw.metric_families.SPECS`: observable counters and gauges read the runtime
at collection time (one reading per collection, shared by the instruments), histograms record each
observation from the moment they are instrumented (OpenTelemetry has no observable histogram), with the
Prometheus export's bucket bounds as advice. The exporter (OTLP, Prometheus, ...) is the application's.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("mw.otel needs OpenTelemetry: pip install 'pytest-mw[otel]'") from exc

from mw.metric_families import SPECS, Family, HistogramValue, Spec, collect, histograms

__all__ = ["Instrumented", "instrument"]


class _Reading:
    """One reading of the runtime serves every instrument of a collection: an instrument asking a second
    time means a new collection has begun, so the runtime is read again."""

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self._lock = threading.Lock()
        self._families: dict[str, Family] = {}
        self._served: set[str] = set()

    def family(self, name: str) -> Family:
        with self._lock:
            if not self._families or name in self._served:
                self._families = {f.spec.name: f for f in collect(self.top_n)}
                self._served = set()
            self._served.add(name)
            return self._families[name]


class Instrumented:
    """What :func:`instrument` made; :meth:`close` detaches the histograms from the runtime."""

    def __init__(self) -> None:
        self._detach: list[Callable[[], None]] = []

    def close(self) -> None:
        for detach in self._detach:
            detach()
        self._detach.clear()


def instrument(meter_provider: MeterProvider | None = None, *, top_n: int = 10) -> Instrumented:
    """Register Mw's instruments on ``meter_provider`` (default: the global one), meter ``mw``."""
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n!r}")
    from mw import __version__

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = provider.get_meter("mw", __version__)
    reading = _Reading(top_n)
    made = Instrumented()
    sources = histograms()
    for spec in SPECS:
        if spec.kind == "histogram":
            hist = meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.help,
                explicit_bucket_boundaries_advisory=sources[spec.name][0][1].bounds,
            )
            for values, source in sources[spec.name]:
                attributes = dict(zip(spec.labels, values, strict=True))

                def record(
                    value: float, hist: metrics.Histogram = hist, attributes: dict[str, str] = attributes
                ) -> None:
                    hist.record(value, attributes)

                source.listeners.append(record)
                made._detach.append(functools.partial(source.listeners.remove, record))
            continue
        callback = _observer(reading, spec)
        if spec.kind == "counter":
            meter.create_observable_counter(spec.name, [callback], unit=spec.unit, description=spec.help)
        else:
            meter.create_observable_gauge(spec.name, [callback], unit=spec.unit, description=spec.help)
    return made


def _observer(reading: _Reading, spec: Spec) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for values, value in reading.family(spec.name).samples:
            assert not isinstance(value, HistogramValue)
            out.append(Observation(value, dict(zip(spec.labels, values, strict=True))))
        return out

    return observe
