"""Draw the Grafana dashboard's panels as PNGs from a Prometheus's answers to the panels' own queries.

No Grafana is installable here: this runs each panel's PromQL (its ``targets``, Grafana's variables put in) through
``/api/v1/query_range`` and draws one PNG per panel with matplotlib (the ``[sim]`` extra): the panel's title, one line
per series named by its ``legendFormat``, the legend outside the plot, the y axis in the panel's unit, and overrides of
``unit`` and ``custom.axisPlacement`` (a right-hand axis) honoured. A ``bargauge`` panel becomes horizontal bars of
each series' last value.

    python deploy/grafana/render_panels.py --prometheus http://127.0.0.1:9090 --last 10m --out docs/monitoring

Exit codes: 0 drawn; 1 with ``--require-data``, a panel had no data (each PNG is written anyway); 2 Prometheus or
the dashboard could not be read.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().with_name("mw-dashboard.json")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
UNITS = {
    "percentunit": "share of reads",
    "reqps": "requests/s",
    "ops": "per second",
    "s": "seconds",
    "bytes": "bytes",
    "decbytes": "bytes",
    "short": "",
}
"""Grafana unit -> the y axis label (``percentunit`` is also drawn as a percentage)."""


class RenderError(Exception):
    """Prometheus or the dashboard could not be read: exit 2 with one line."""


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]
    unit: str
    right: bool = False


@dataclass
class Panel:
    id: int
    title: str
    kind: str
    unit: str
    description: str
    exprs: list[tuple[str, str]]
    """``(PromQL as sent, legendFormat)``."""
    overrides: list[dict[str, Any]] = field(default_factory=list)


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``1.5h``... in seconds."""
    found = DURATION.match(text.strip())
    if found is None:
        raise RenderError(f"{text!r}: a duration such as 30s, 10m or 2h")
    return float(found.group(1)) * SECONDS[found.group(2)]


def _promql_duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def panels(dashboard: dict[str, Any], variables: dict[str, str]) -> list[Panel]:
    """The dashboard's panels with their queries, Grafana's ``$name`` / ``${name}`` variables replaced."""

    def put_in(expr: str) -> str:
        for name in sorted(variables, key=len, reverse=True):  # $__range before $__r..., longest first
            expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
        return expr

    out = []
    for p in dashboard.get("panels", ()):
        if p.get("type") == "row":
            continue
        config = p.get("fieldConfig", {})
        out.append(
            Panel(
                id=int(p["id"]),
                title=str(p["title"]),
                kind=str(p.get("type", "timeseries")),
                unit=str(config.get("defaults", {}).get("unit", "short")),
                description=str(p.get("description", "")),
                exprs=[(put_in(t["expr"]), str(t.get("legendFormat", ""))) for t in p.get("targets", ())],
                overrides=list(config.get("overrides", ())),
            )
        )
    return out


def legend(fmt: str, labels: dict[str, str], expr: str) -> str:
    """Grafana's ``legendFormat``: ``{{label}}`` replaced by the series' label value."""
    if not fmt:
        return "{" + ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items())) + "}" if labels else expr
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _override(panel: Panel, name: str) -> tuple[str, bool]:
    """The unit and whether the series goes on the right-hand axis, after the panel's overrides."""
    unit, right = panel.unit, False
    for o in panel.overrides:
        matcher = o.get("matcher", {})
        pattern = str(matcher.get("options", ""))
        kind = matcher.get("id")
        if (kind == "byName" and name == pattern) or (kind == "byRegexp" and re.fullmatch(pattern, name)):
            for prop in o.get("properties", ()):
                if prop.get("id") == "unit":
                    unit = str(prop["value"])
                elif prop.get("id") == "custom.axisPlacement":
                    right = prop.get("value") == "right"
    return unit, right


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=self.timeout_s) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # a 400 carries Prometheus's own reason
            detail = exc.read().decode(errors="replace")[:300]
            raise RenderError(f"{self.url}: {expr}: HTTP {exc.code}: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise RenderError(f"{self.url}: cannot query Prometheus: {exc}") from exc
        if body.get("status") != "success":
            raise RenderError(f"{self.url}: {expr}: {body.get('error', body)}")
        return list(body["data"]["result"])


def fetch(prom: Prometheus, panel: Panel, start: float, end: float, step: float) -> list[Series]:
    out = []
    for expr, fmt in panel.exprs:
        for result in prom.query_range(expr, start, end, step):
            name = legend(fmt, dict(result.get("metric", {})), expr)
            unit, right = _override(panel, name)
            times = [float(t) for t, _ in result["values"]]
            values = [float(v) for _, v in result["values"]]  # "NaN" and "+Inf" parse; NaN leaves a gap
            out.append(Series(name, times, values, unit, right))
    return out


def _axis(ax: Any, unit: str, values: list[float]) -> None:
    """The y axis in the panel's unit: a percentage, bytes with SI prefixes, other figures with SI prefixes."""
    from matplotlib.ticker import EngFormatter, PercentFormatter

    ax.set_ylabel(UNITS.get(unit, unit))
    if unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif unit in ("bytes", "decbytes"):
        ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    elif unit == "s":
        ax.yaxis.set_major_formatter(EngFormatter(unit="s"))  # "4 ms", never a bare "4 m" that reads as minutes
    else:
        ax.yaxis.set_major_formatter(EngFormatter())
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) >= 0:
        ax.set_ylim(bottom=0, top=max(finite) * 1.05 or 1.0)  # from zero, as Grafana's counts and ratios read


def _clock(t: float, _pos: int | None = None) -> str:
    """An x tick: Unix seconds as UTC wall-clock time."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def draw(panel: Panel, series: list[Series], path: Path, span: tuple[float, float]) -> None:
    """One PNG: the panel's title, its series, the legend outside the plot area."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator

    fig, ax = plt.subplots(figsize=(9.6, 3.6), dpi=100)
    try:
        ax.set_title(panel.title, loc="left", fontweight="bold")
        if not series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
        elif panel.kind == "bargauge":
            last = [(s.name, next((v for v in reversed(s.values) if not math.isnan(v)), 0.0)) for s in series]
            last.sort(key=lambda nv: nv[1])
            ax.barh([n for n, _ in last], [v for _, v in last], color="tab:blue")
            ax.set_xlabel(" ".join(filter(None, (UNITS.get(panel.unit, panel.unit), "(at the range's end)"))))
            ax.xaxis.set_major_formatter(EngFormatter())
            ax.tick_params(axis="y", labelsize=8)
        else:
            right_ax = ax.twinx() if any(s.right for s in series) else None
            handles = []
            for i, s in enumerate(series):
                if all(math.isnan(v) for v in s.values):
                    continue  # a quantile of no observations: Grafana draws nothing either
                on_right = s.right and right_ax is not None
                target = right_ax if on_right and right_ax is not None else ax
                label = f"{s.name} (right axis)" if on_right else s.name
                style = "--" if on_right else "-"
                color = f"C{i % 10}" if len(series) <= 10 else plt.get_cmap("tab20")(i % 20)
                (line,) = target.plot(s.times, s.values, style, color=color, label=label, linewidth=1.4)
                handles.append(line)
            left = [s for s in series if not (s.right and right_ax is not None)]
            _axis(ax, left[0].unit if left else panel.unit, [v for s in left for v in s.values])
            if right_ax is not None:
                right = [s for s in series if s.right]
                _axis(right_ax, right[0].unit, [v for s in right for v in s.values])
            ax.set_xlim(span[0], span[1])
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 3, 6, 10]))
            ax.xaxis.set_major_formatter(FuncFormatter(_clock))
            ax.set_xlabel("time (UTC)")
            ax.grid(True, alpha=0.3)
            ax.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(1.02 if right_ax is None else 1.1, 1.0),
                ncol=1 if len(handles) <= 12 else 2,
                fontsize="small" if len(handles) > 6 else "medium",
            )
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render(
    prom: Prometheus,
    dashboard: dict[str, Any],
    out: Path,
    start: float,
    end: float,
    *,
    step: float,
    rate_interval: float,
    instance: str = ".*",
    trim: bool = False,
) -> dict[str, tuple[Path, int]]:
    """Panel title -> (its PNG, the number of series drawn); ``trim``: the time axis starts at the first sample any
    panel has (a run that began inside the range fills the width)."""
    variables = {
        "__rate_interval": _promql_duration(rate_interval),
        "__interval": _promql_duration(step),
        "__range": _promql_duration(end - start),
        "instance": instance,
    }
    out.mkdir(parents=True, exist_ok=True)
    fetched = [
        # A bar gauge shows each series' last value: asked at the range's end only, a topk() names the top items then.
        (panel, fetch(prom, panel, end if panel.kind == "bargauge" else start, end, step))
        for panel in panels(dashboard, variables)
    ]
    first = min((s.times[0] for _, series in fetched for s in series if s.times), default=start)
    span = (max(start, first) if trim else start, end)
    drawn = {}
    for panel, series in fetched:
        path = out / f"panel-{panel.id:02d}-{slug(panel.title)}.png"
        draw(panel, series, path, span)
        drawn[panel.title] = (path, len(series))
    return drawn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Draw each panel of a Grafana dashboard as a PNG from a Prometheus's query_range answers."
    )
    parser.add_argument("--prometheus", required=True, metavar="URL", help="e.g. http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help="the dashboard JSON (default: mw's)")
    parser.add_argument("--out", type=Path, default=Path("panels"), help="folder for the PNGs (default: panels)")
    parser.add_argument("--last", default="15m", help="the time range: this long before --end (default: 15m)")
    parser.add_argument("--end", type=float, help="the range's end, Unix seconds (default: now)")
    parser.add_argument("--step", help="the query resolution (default: the range / 300, at least 1s)")
    parser.add_argument("--rate-interval", default="30s", help="$__rate_interval (default: 30s)")
    parser.add_argument("--instance", default=".*", help="$instance, a regex of scrape targets (default: all)")
    parser.add_argument("--trim", action="store_true", help="start the time axis at the first sample of any panel")
    parser.add_argument("--require-data", action="store_true", help="exit 1 if a panel has no data")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        end = time.time() if args.end is None else args.end
        start = end - parse_duration(args.last)
        step = parse_duration(args.step) if args.step else max(1.0, (end - start) / 300)
        try:
            dashboard = json.loads(args.dashboard.read_text())
        except (OSError, ValueError) as exc:
            raise RenderError(f"{args.dashboard}: cannot read the dashboard: {exc}") from exc
        drawn = render(
            Prometheus(args.prometheus),
            dashboard,
            args.out,
            start,
            end,
            step=step,
            rate_interval=parse_duration(args.rate_interval),
            instance=args.instance,
            trim=args.trim,
        )
    except RenderError as exc:
        print(f"render_panels: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for title, (path, n) in drawn.items():
        print(f"{path}: {title} ({n} series)")
    empty = [title for title, (_, n) in drawn.items() if n == 0]
    if empty and args.require_data:
        print(f"render_panels: no data for {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
