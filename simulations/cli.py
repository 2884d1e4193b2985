"""``mw-sim``: run a scenario or replay a trace and print its verdict, or list scenarios.

mw-sim run simulations/scenarios/staging-synthetic.toml [--agents N --nodes M --duration S --seed K]
           [--backend embedded|redis|containers|redis-cluster|redis-sentinel --redis-url URL --mlt-dsn DSN]
           [--realtime FACTOR] [--out DIR]
           [--metrics-port N [--metrics-addr ADDR] [--metrics-linger S]]
mw-sim replay TRACE [--format oracle-general|csv] [--scenario BASE] [--agents N --nodes M --seed K ...] [--out DIR]
mw-sim list

Exit codes: 0 every check passed (or the scenario is informational), 1 a check failed, 2 the command, the scenario, an
MW_* variable or a server is wrong (one line on stderr, no traceback). Any other exception is a bug and ends in its
traceback.

MW_* variables in the environment override the scenario's [runtime]; the report lists every setting with its source.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mw.errors import ConfigError, MltUnavailable, TierUnavailable
from mw.secrets import mask_secrets
from simulations.backends import BACKENDS, BackendUnavailable, open_backend
from simulations.scenario import Scenario, ScenarioError, bundled, load_scenario
from simulations.settings import resolve
from simulations.trace import FORMATS, TraceError, guess_format

if TYPE_CHECKING:
    from simulations.runner import Workload

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

SIM_EXTRA = ("simpy", "rich", "matplotlib")

HELP_DESCRIPTION = """Run a scenario or replay a trace and print its verdict, or list scenarios.

  mw-sim run simulations/scenarios/staging-synthetic.toml [--agents N --nodes M --duration S --seed K]
             [--backend embedded|redis|containers|redis-cluster|redis-sentinel --redis-url URL --mlt-dsn DSN]
           [--realtime FACTOR] [--out DIR]
             [--metrics-port N [--metrics-addr ADDR] [--metrics-linger S]]
  mw-sim replay TRACE [--format oracle-general|csv] [--scenario BASE] [--agents N --nodes M --seed K ...] [--out DIR]
  mw-sim list

Exit codes: 0 every check passed, 1 a check failed, 2 the command, the scenario, an MW_* variable or a server is
wrong (one line on stderr, no traceback). MW_* variables in the environment override the scenario's [runtime]; the
report lists every setting with its source.

--metrics-port N serves the fleet's Prometheus metrics (mw.metrics, the [prometheus] extra) on ADDR:N/metrics while
the cached run runs: with --realtime FACTOR a scraper sees it progress. From the cached run's end the endpoint
answers with its final values (the comparison runs are not served); --metrics-linger S keeps serving them for S
seconds after the verdict (Ctrl-C or SIGTERM stops early)."""
"""``--help``'s text: the module docstring's content without its reST markup."""


class MissingExtra(ImportError):
    """An optional package ``mw-sim run`` needs is not installed; ``extra`` names the extra that brings it."""

    def __init__(self, missing: list[str], extra: str) -> None:
        self.missing = missing
        self.extra = extra
        super().__init__(f"mw-sim run needs {', '.join(missing)}: pip install 'pytest-mw[{extra}]'")


class MetricsUnavailable(Exception):
    """``--metrics-port``'s address cannot be served (the port is in use, the address is not this host's)."""


class Plan(NamedTuple):
    """What an invocation runs: the scenario, a workload in place of its synthetic one, keys added to the result."""

    scenario: Scenario
    workload: Workload | None = None
    extra: dict[str, Any] | None = None


# Usage and infrastructure errors: exit 2 with one line. Anything else is a bug and keeps its traceback.
_EXIT_2 = (
    ScenarioError,
    TraceError,
    ConfigError,
    BackendUnavailable,
    MissingExtra,
    MetricsUnavailable,
    TierUnavailable,
    MltUnavailable,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mw-sim", description=HELP_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a scenario (a path, or the name of a bundled one)",
        description="Run a scenario and print its verdict (exit 0 pass, 1 a check failed, 2 bad input).",
    )
    run.add_argument("scenario", help="a scenario file (TOML) or the name of a bundled one (mw-sim list)")
    run.add_argument("--duration", type=float, help="simulated seconds (default: the scenario's [run] duration_s)")
    _fleet_options(
        run,
        "default: embedded (containers with --engine ray); redis-cluster and redis-sentinel start a local cluster or "
        "Sentinel group and a PostgreSQL",
    )
    run.add_argument("--engine", choices=("simpy", "ray"), default="simpy", help="ray: agents as Ray actors, real time")
    run.add_argument("--address", help="with --engine ray: the Ray cluster (e.g. auto); default: a local Ray")
    run.add_argument("--shards", type=int, help="with --engine ray: actors the agents are split over")
    run.add_argument("--speed", type=float, help="with --engine ray: simulated seconds per wall second")
    replay = sub.add_parser(
        "replay",
        help="replay a cache trace through the fleet (libCacheSim oracleGeneral or CSV)",
        description="Replay a cache trace through the fleet and print its verdict.",
    )
    replay.add_argument("trace", type=Path, help="the trace file (libCacheSim oracleGeneral .bin, or CSV)")
    replay.add_argument(
        "--format", choices=FORMATS, help="default: csv for *.csv, oracle-general for *.bin / *oracleGeneral*"
    )
    replay.add_argument("--scenario", help="runtime settings, Mlt latency, fleet and targets (default: the defaults)")
    _fleet_options(replay, "default: embedded")
    sub.add_parser("list", help="list the bundled scenarios", description="List the bundled scenarios.")
    return parser


def _fleet_options(command: argparse.ArgumentParser, backend_help: str) -> None:
    """The options ``run`` and ``replay`` share: the fleet, the seed, the backend, the outputs."""
    command.add_argument("--agents", type=int, help="agents in the fleet (default: the scenario's [run] agents)")
    command.add_argument("--nodes", type=int, help="nodes the agents share an L1 on (default: the scenario's)")
    command.add_argument("--warmup", type=float, help="simulated seconds before hit ratios are measured")
    command.add_argument("--seed", type=int, help="seed of every random stream: a run replays exactly")
    command.add_argument("--backend", choices=BACKENDS, default=None, help=backend_help)
    command.add_argument("--redis-url", help="with --backend redis: an existing Redis (keys go under a run namespace)")
    command.add_argument("--mlt-dsn", help="with --backend redis: postgresql://... (a database per run is created)")
    command.add_argument("--realtime", type=float, metavar="FACTOR", help="simpy.rt: wall seconds per simulated second")
    command.add_argument("--no-baseline", action="store_true", help="skip the caching-disabled baseline run")
    command.add_argument(
        "--out", type=Path, default=Path("mw-sim-out"), help="folder for result.json, report.md, plots"
    )
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve the fleet's Prometheus metrics on ADDR:N/metrics while the cached run runs (meant with "
        "--realtime; needs the [prometheus] extra; 0: a free port); from the run's end its final values",
    )
    command.add_argument(
        "--metrics-addr", metavar="ADDR", help="with --metrics-port: the address to bind (default: 127.0.0.1)"
    )
    command.add_argument(
        "--metrics-linger",
        type=float,
        metavar="S",
        help="with --metrics-port: keep serving the run's final values S seconds after the verdict (Ctrl-C or SIGTERM "
        "stops; the exit code stays the verdict's)",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("simulations").setLevel(logging.INFO)
    try:
        if args.command == "list":
            return _list()
        if args.command == "replay":
            return _replay(args, argv if argv is not None else sys.argv[1:])
        return _run(args, argv if argv is not None else sys.argv[1:])
    except _EXIT_2 as exc:
        print(f"mw-sim: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    """The error on one line, passwords masked; the runtime's errors keep their type name (it says which tier)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, (ScenarioError, TraceError, BackendUnavailable, MissingExtra, MetricsUnavailable)):
        text = f"{type(exc).__name__}: {text}"
    return mask_secrets(text)


def _require(modules: tuple[str, ...], extra: str) -> None:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtra(missing, extra)


def _list() -> int:
    header = ("scenario", "agents x duration", "targets", "description")
    rows = []
    for name, path in bundled().items():
        s = load_scenario(path)
        rows.append((name, f"{s.run.agents} x {s.run.duration_s:g} s", _targets_text(s), _summary(s.description)))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich comes with the [sim] extra; listing should not need it
        print(_plain_table(header, rows))
        return EXIT_PASS
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    return EXIT_PASS


def _plain_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Left-aligned columns two spaces apart, for a terminal without rich."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in (header, *rows))
    return "\n".join(line.rstrip() for line in lines)


def _summary(description: str, limit: int = 100) -> str:
    """The description's first sentence, cut at a word boundary."""
    text = " ".join(description.split())
    first = text.split(". ")[0].rstrip(".")
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0] + " ..."


def _targets_text(s: Any) -> str:
    """The checks the scenario's verdict will run, with its ``[targets]`` (the checklist's, or stricter)."""
    t = s.targets
    parts = [
        f"hit > {t.hit_ratio_week1}",
        f"hit > {t.hit_ratio_week2}" if t.hit_ratio_week2 is not None else "",
        f"running TTL <= {t.running_ttl_max_s:g} s",
        "no double prefix",
        "heartbeats",
        "telemetry true",
        f"L0 <= {t.l0_max_items} items",
        f"loads/expiry <= {t.max_loads_per_key_per_expiry}",
        f"stale reads <= {t.max_stale_reads}",
    ]
    return ", ".join(p for p in parts if p)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    _require(SIM_EXTRA, "sim")
    _check_fleet_flags(args)
    if args.engine == "ray":
        _require(("ray",), "ray")
    for flag, value in (("--duration", args.duration), ("--speed", args.speed)):
        if value is not None and value <= 0:
            raise ScenarioError(f"{flag} {value}: must be positive")
    scenario = _load(args.scenario)
    _check_out(args)
    scenario = _with_fleet_flags(scenario, args, duration_s=args.duration)
    resolve(scenario.runtime)  # a bad MW_* variable is a ConfigError naming it: exit 2 before any server starts
    engine = None
    backend_name = args.backend or "embedded"
    if args.engine == "ray":
        import functools

        from simulations.ray_engine import run_on_ray

        # fakeredis lives in one process: agents spread over Ray actors need a real Redis and PostgreSQL.
        backend_name = args.backend or "containers"
        engine = functools.partial(run_on_ray, address=args.address, shards=args.shards, speed=args.speed)
    return _execute(args, argv, backend_name, lambda: Plan(scenario), engine=engine)


def _replay(args: argparse.Namespace, argv: list[str]) -> int:
    """``mw-sim replay``: index the trace (its span, objects, the single-cache comparison), then run it like ``run``."""
    _require(SIM_EXTRA, "sim")
    _check_fleet_flags(args)
    base = Scenario(name="replay") if args.scenario is None else _load(args.scenario)
    resolve(base.runtime)
    _check_out(args)
    from simulations.replay import TraceReplay, index_trace, replay_scenario

    fmt = guess_format(args.trace, args.format)

    def plan() -> Plan:  # once the backend is up: a wrong server is named before a long pass over the trace
        config = base.config()
        index = index_trace(args.trace, fmt, config.l0_max_items, config.l0_max_bytes)
        scenario = _with_fleet_flags(replay_scenario(base, index), args)
        return Plan(scenario, TraceReplay(index, scenario), {"replay": index.summary()})

    return _execute(args, argv, args.backend or "embedded", plan)


def _check_fleet_flags(args: argparse.Namespace) -> None:
    for flag, value, low in (("--agents", args.agents, 1), ("--nodes", args.nodes, 1)):
        if value is not None and value < low:
            raise ScenarioError(f"{flag} {value}: must be at least {low}")
    if args.realtime is not None and args.realtime <= 0:
        raise ScenarioError(f"--realtime {args.realtime}: must be positive")
    if args.warmup is not None and args.warmup < 0:
        raise ScenarioError(f"--warmup {args.warmup}: cannot be negative")
    _check_metrics_flags(args)


def _check_metrics_flags(args: argparse.Namespace) -> None:
    if args.metrics_port is None:
        for flag, value in (("--metrics-addr", args.metrics_addr), ("--metrics-linger", args.metrics_linger)):
            if value is not None:
                raise ScenarioError(f"{flag} needs --metrics-port")
        return
    if not 0 <= args.metrics_port <= 65535:
        raise ScenarioError(f"--metrics-port {args.metrics_port}: a TCP port (0-65535; 0 picks a free one)")
    if args.metrics_linger is not None and not 0 <= args.metrics_linger < float("inf"):
        raise ScenarioError(f"--metrics-linger {args.metrics_linger}: seconds, 0 or more")
    if getattr(args, "engine", "simpy") == "ray":
        raise ScenarioError(
            "--metrics-port serves this process's agents; with --engine ray they live in the Ray actors' "
            "processes: use the SimPy engine (the default)"
        )
    _require(("prometheus_client",), "prometheus")


def _load(name_or_path: str) -> Scenario:
    try:
        return load_scenario(name_or_path)
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not UTF-8
        raise ScenarioError(f"{name_or_path}: cannot read the scenario: {exc}") from exc


def _check_out(args: argparse.Namespace) -> None:
    if args.out.exists() and not args.out.is_dir():
        raise ScenarioError(f"--out {args.out}: exists and is not a directory")


def _with_fleet_flags(scenario: Scenario, args: argparse.Namespace, **run: Any) -> Scenario:
    """``scenario`` with the command line's ``[run]`` values (``--agents``, ``--nodes``, ``--warmup``, ``--seed``)."""
    flags = {"agents": args.agents, "nodes": args.nodes, "warmup_s": args.warmup, "seed": args.seed, **run}
    return scenario.with_overrides(run={k: v for k, v in flags.items() if v is not None})


def _execute(
    args: argparse.Namespace,
    argv: list[str],
    backend_name: str,
    plan: Callable[[], Plan],
    *,
    engine: Any = None,
) -> int:
    """Open the backend, run what ``plan`` says on it, write the outputs, print the verdict; the verdict's exit code."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    started = time.perf_counter()
    with _MetricsEndpoint.open(args) as metrics:  # bound before any server starts: a port in use is exit 2 at once
        code = _execute_run(args, argv, backend_name, plan, engine, console, started, metrics)
        if metrics is not None and metrics.linger_s:
            console.print(
                f"serving the run's final metrics on {metrics.url} for {metrics.linger_s:g} s (Ctrl-C or SIGTERM stops)"
            )
            metrics.linger()
    return code


class _MetricsEndpoint:
    """``--metrics-port``: ``mw.metrics.serve`` of a collector frozen when the cached run reaches its end."""

    def __init__(self, collector: Any, server: Any, thread: Any, linger_s: float) -> None:
        self.collector = collector
        self.server = server
        self.thread = thread
        self.linger_s = linger_s
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}/metrics"

    @classmethod
    @contextlib.contextmanager
    def open(cls, args: argparse.Namespace) -> Iterator[_MetricsEndpoint | None]:
        if args.metrics_port is None:
            yield None
            return
        import mw.metrics

        addr = args.metrics_addr or "127.0.0.1"
        collector = mw.metrics.MwCollector()
        try:
            server, thread = mw.metrics.serve(args.metrics_port, addr, collector=collector)
        except OSError as exc:  # in use, not an address of this host, a privileged port
            reason = exc.strerror or str(exc)
            raise MetricsUnavailable(f"--metrics-port {args.metrics_port}: cannot serve on {addr}: {reason}") from exc
        endpoint = cls(collector, server, thread, args.metrics_linger or 0.0)
        try:
            yield endpoint
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)

    def on_progress(self, label: str, now: float, duration: float) -> None:
        """Freeze at the cached run's last sample: its agents close right after, and the comparison runs that follow
        (caching off, no prewarming) are not the fleet the scraper watches."""
        if label == "cached" and now >= duration and not self.collector.frozen:
            self.collector.freeze()

    def linger(self) -> None:
        """Wait ``linger_s``; Ctrl-C (SIGINT) or SIGTERM ends the wait early: the run is over, its results written."""
        done = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers belong to the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda _sig, _frame: done.set())
        try:
            done.wait(self.linger_s)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _execute_run(
    args: argparse.Namespace,
    argv: list[str],
    backend_name: str,
    plan: Callable[[], Plan],
    engine: Any,
    console: Any,
    started: float,
    metrics: _MetricsEndpoint | None,
) -> int:
    """:func:`_execute`'s run, with ``metrics`` (``--metrics-port``) told of the progress."""
    from simulations.progress import LiveProgress
    from simulations.report import write_all
    from simulations.runner import run_scenario
    from simulations.verdict import Check

    with open_backend(backend_name, args.redis_url, args.mlt_dsn) as backend:
        scenario, workload, extra = plan()
        console.print(
            f"[bold]mw-sim[/] {scenario.name}: {scenario.run.agents} agents on {scenario.run.nodes} nodes, "
            f"{scenario.run.duration_s:g} simulated s, seed {scenario.run.seed}"
        )
        console.print(f"backend: {backend.description}; engine: {getattr(args, 'engine', 'simpy')}")
        if metrics is not None:
            console.print(f"metrics: {metrics.url} (the cached run; its final values from its end)", markup=False)
        env = [
            f"{k}={mask_secrets(v.strip())}" for k, v in sorted(os.environ.items()) if k.startswith("MW_") and v.strip()
        ]
        if env:
            console.print(
                f"MW_* in the environment: {', '.join(env)} (the report's Configuration says what applied)",
                markup=False,
            )
        with LiveProgress(console, disable=args.quiet) as progress:

            def on_progress(label: str, now: float, duration: float, ratio: float) -> None:
                progress.update(label, now, duration, ratio)
                if metrics is not None:
                    metrics.on_progress(label, now, duration)

            result = run_scenario(
                scenario,
                backend,
                realtime=args.realtime,
                log_dir=args.out / "logs",
                progress=on_progress,
                baseline=False if args.no_baseline else None,
                run=engine,
                workload=workload,
            )
    result.update(extra or {})
    result["command"] = "mw-sim " + shlex.join(argv)
    result["wall_total_s"] = round(time.perf_counter() - started, 3)
    paths = write_all(result, args.out)
    checks = [Check(**c) for c in result["verdict"]["checks"]]
    _print_verdict(console, result, checks)
    if "replay" in result:
        _print_single_cache(console, result["replay"]["single_cache"])
    console.print(f"report: {paths['markdown']}  result: {paths['json']}  ({result['wall_total_s']:.1f} s wall)")
    if result["verdict"]["passed"]:
        return EXIT_PASS
    if result.get("informational"):
        console.print("informational scenario: its failed checks are reported above and do not fail the run (exit 0)")
        return EXIT_PASS
    return EXIT_FAIL


def _print_verdict(console: Any, result: dict[str, Any], checks: list[Any]) -> None:
    from rich.table import Table

    cached = result["runs"]["cached"]
    mlt = result["mlt"]
    hr = cached["hit_ratio"]
    summary = (
        f"hit ratio {hr['observed']:.4f} (runtime's mw_hit_ratio {hr['mw_hit_ratio']:.4f}), "
        f"Mlt queries {mlt['queries_cached']}"
    )
    if "reduction" in mlt:
        summary += f" vs {mlt['queries_baseline']} uncached ({mlt['reduction']:.1%} fewer)"
    console.print(summary)
    passed = result["verdict"]["passed"]
    title = f"Verdict: {'PASS' if passed else 'FAIL'}" + (" (informational)" if result.get("informational") else "")
    table = Table(title=title, title_style="bold green" if passed else "bold red")
    for column in ("check", "target", "observed", "result", "by how much"):
        table.add_column(column)
    for c in checks:
        table.add_row(c.title, c.target, c.observed, "[green]pass[/]" if c.passed else "[bold red]FAIL[/]", c.shortfall)
    console.print(table)


def _print_single_cache(console: Any, single: dict[str, Any]) -> None:
    """The trace's hit ratio in one cache of L0's capacity: the L0 policy next to LRU."""
    items = single["items"]
    line = (
        f"one cache of {items['max_items']} items over the whole trace: S3-FIFO {items['s3fifo']['hit_ratio']:.4f}, "
        f"LRU {items['lru']['hit_ratio']:.4f}"
    )
    if "bytes" in single:
        b = single["bytes"]
        line += f"; bounded by {b['max_bytes']} bytes too: S3-FIFO {b['s3fifo']['hit_ratio']:.4f}, LRU "
        line += f"{b['lru']['hit_ratio']:.4f}"
    console.print(line)


if __name__ == "__main__":
    raise SystemExit(main())
