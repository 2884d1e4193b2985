"""``mw-sim run --metrics-port``: the port is bound before any server starts, its errors are one line with exit 2,
the Ray engine and a missing prometheus_client are refused, and ``--help`` documents it."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from mw.telemetry import process_telemetry
from simulations import backends
from simulations.cli import EXIT_ERROR, EXIT_PASS, main

from .prometheus_server import free_port

pytest.importorskip("prometheus_client", reason="needs the [prometheus] extra")
QUICK = ["--agents", "3", "--duration", "30", "--warmup", "0", "--no-baseline", "--quiet"]


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    """A scenario whose failed checks do not fail the run (30 s are too short for the week-1 hit ratio)."""
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\ninformational = true\n')
    return str(path)


def exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``mw-sim`` expecting exit 2: one stderr line starting ``mw-sim:``, no traceback."""
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("mw-sim: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_port_in_use_exits_2_before_the_run(
    taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = backends.open_backend

    def spy(name: str, *args: Any) -> AbstractContextManager[Any]:
        opened.append(name)
        return real(name, *args)

    monkeypatch.setattr("simulations.cli.open_backend", spy)
    err = exit_2(["run", "hot-key-herd", *QUICK, "--metrics-port", str(taken_port), "--out", str(tmp_path)], capsys)
    assert f"--metrics-port {taken_port}" in err and "in use" in err
    assert opened == [], "no backend opened, nothing run"
    assert not (tmp_path / "result.json").exists()


def test_the_endpoint_serves_before_the_backend_opens_and_is_released(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    scraped: list[str] = []
    real = backends.open_backend

    def spy(name: str, *args: Any) -> AbstractContextManager[Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            scraped.append(reply.read().decode())
        return real(name, *args)

    monkeypatch.setattr("simulations.cli.open_backend", spy)
    argv = ["run", tiny, *QUICK, "--metrics-port", str(port), "--out", str(tmp_path / "out")]
    assert main(argv) == EXIT_PASS
    assert "mw_hits_total" in scraped[0]
    assert f"metrics: http://127.0.0.1:{port}/metrics" in capsys.readouterr().out
    with socket.socket() as s:  # shut down and closed: no listener left (TIME_WAIT of the scrape aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_the_spy_sees_no_endpoint_without_the_option(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: without ``--metrics-port`` nothing answers on the port."""
    port = free_port()
    real = backends.open_backend
    refused: list[bool] = []

    def spy(name: str, *args: Any) -> AbstractContextManager[Any]:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).close()
            refused.append(False)
        except OSError:
            refused.append(True)
        return real(name, *args)

    monkeypatch.setattr("simulations.cli.open_backend", spy)
    assert main(["run", tiny, *QUICK, "--out", str(tmp_path / "out")]) == EXIT_PASS
    assert refused == [True]


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [
        (["--metrics-linger", "5"], "--metrics-linger needs --metrics-port"),
        (["--metrics-addr", "127.0.0.1"], "--metrics-addr needs --metrics-port"),
        (["--metrics-port", "70000"], "--metrics-port 70000"),
        (["--metrics-port", "0", "--metrics-linger", "-1"], "--metrics-linger -1"),
        (["--metrics-port", "0", "--engine", "ray"], "--engine ray"),
    ],
)
def test_bad_metrics_flags_exit_2(
    extra: list[str], wanted: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wanted in exit_2(["run", "hot-key-herd", *QUICK, *extra, "--out", str(tmp_path)], capsys)


def test_an_address_not_of_this_host_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "hot-key-herd", *QUICK, "--metrics-port", "0", "--metrics-addr", "192.0.2.1"]
    assert "cannot serve on 192.0.2.1" in exit_2([*argv, "--out", str(tmp_path)], capsys)


def test_without_prometheus_client_exits_2_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    err = exit_2(["run", "hot-key-herd", *QUICK, "--metrics-port", "0", "--out", str(tmp_path)], capsys)
    assert "prometheus_client" in err and "pytest-mw[prometheus]" in err


def test_help_documents_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "replay"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for option in ("--metrics-port N", "--metrics-addr ADDR", "--metrics-linger S"):
            assert option in text, (command, option)
        assert "--realtime" in text and "[prometheus] extra" in text


def test_the_linger_serves_the_cached_runs_final_values_until_sigterm(
    tiny: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the baseline run too: the values served after the cached run are its own (the baseline's misses, every
    read of it, are not added), gauges included. SIGTERM, sent once the linger's handler is in place (a condition,
    not a time), ends the wait with the verdict's exit code and the handler is put back."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers belong to the main thread; this runner runs tests in another")
    from prometheus_client.parser import text_string_to_metric_families

    default = signal.getsignal(signal.SIGTERM)
    port = free_port()
    served: dict[tuple[str, str], float] = {}

    def stop() -> None:
        deadline = time.monotonic() + 120
        while signal.getsignal(signal.SIGTERM) is default and time.monotonic() < deadline:
            time.sleep(0.05)
        if signal.getsignal(signal.SIGTERM) is default:
            return
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                for family in text_string_to_metric_families(reply.read().decode()):
                    for sample in family.samples:
                        served[(sample.name, sample.labels.get("tier", ""))] = sample.value
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    before = process_telemetry.counters()  # the counters are the process's: earlier runs in it count too
    with_baseline = [a for a in QUICK if a != "--no-baseline"]
    argv = ["run", tiny, *with_baseline, "--metrics-port", str(port), "--metrics-linger", "300"]
    assert main([*argv, "--out", str(tmp_path)]) == EXIT_PASS
    stopper.join(10)
    assert signal.getsignal(signal.SIGTERM) is default, "the handler is put back"
    assert "serving the run's final metrics" in capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())
    cached = result["runs"]["cached"]["telemetry_truth"]["counters"]
    baseline = result["runs"]["baseline"]["telemetry_truth"]["counters"]
    assert baseline["misses"]["runtime"] > 0, "the baseline read something: the comparison below can fail"
    assert served[("mw_misses_total", "")] - before["misses"] == cached["misses"]["runtime"]
    for tier in ("l0", "l1", "l2"):
        assert served[("mw_hits_total", tier)] - before[f"{tier}_hits"] == cached[f"{tier}_hits"]["runtime"]
    assert served[("mw_l0_items", "")] > 0, "the gauges of the run's end, not of closed agents"
