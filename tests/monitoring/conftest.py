"""Scraping the process's metrics over HTTP, as Prometheus does."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator

import pytest

Scrape = Callable[[], dict[tuple[str, frozenset[tuple[str, str]]], float]]


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    """``mw.metrics.serve`` on a free loopback port for the module's tests."""
    metrics = pytest.importorskip("mw.metrics", reason="needs the [prometheus] extra (prometheus_client)")
    server, thread = metrics.serve(0, "127.0.0.1")
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def scrape_text(metrics_url: str) -> Callable[[], str]:
    def get() -> str:
        with urllib.request.urlopen(metrics_url, timeout=10) as reply:
            return str(reply.read().decode())

    return get


@pytest.fixture
def scrape(scrape_text: Callable[[], str]) -> Scrape:
    """One scrape, parsed: ``{(series name, labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    def get() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        out = {}
        for family in text_string_to_metric_families(scrape_text()):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out

    return get
