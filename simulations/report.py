"""The outputs of an invocation: ``result.json``, ``report.md`` and PNG plots (matplotlib, Agg) in one folder.

Nothing written carries a password: every string of the result is passed through
:func:`mw.secrets.mask_secrets` first (the command line and the run overrides may quote a server URL).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mw.secrets import masked

PLOTS = {
    "hit_ratio": "hit_ratio.png",
    "mlt_qps": "mlt_qps.png",
    "l0_size": "l0_size.png",
    "loads_per_expiry": "loads_per_expiry.png",
}


def write_all(result: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    result = masked(result)
    paths = {"json": out / "result.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    plots = write_plots(result, out)
    paths["markdown"].write_text(markdown(result, {k: p.name for k, p in plots.items()}), encoding="utf-8")
    return {**paths, **plots}


# --- plots ----------------------------------------------------------------------------------------------
# Legends sit right of the axes (saved with bbox_inches="tight" so they are kept): the data are never under them.
# Time plots shade the warm-up (not measured) and any fault windows, so a dip there reads as expected, not as a bug.
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, "fontsize": 7}
WARMUP_COLOR, FAULT_COLOR = "0.6", "tab:red"
MAX_PLAIN_BARS = 12  # more distinct loads-per-expiry counts than this are grouped in power-of-two bins
VERTICAL_MAX_BARS, VERTICAL_MAX_LABEL = 8, 6  # beyond either, the bars turn horizontal so labels cannot collide


def write_plots(result: dict[str, Any], out: Path) -> dict[str, Path]:
    figures = {
        "hit_ratio": hit_ratio_figure(result),
        "mlt_qps": mlt_qps_figure(result),
        "l0_size": l0_size_figure(result),
        "loads_per_expiry": loads_per_expiry_figure(result),
    }
    return {name: _save(fig, out / PLOTS[name]) for name, fig in figures.items()}


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A Figure on its own Agg canvas (no pyplot: no global figure list to leak or close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _minutes(series: list[dict[str, Any]]) -> list[float]:
    return [row["t"] / 60 for row in series]


def shade_windows(ax: Any, result: dict[str, Any]) -> None:
    """Shade the warm-up (0 to ``warmup_s``) and each ``result["faults"]`` entry ``{start_s, end_s, what}``."""
    p = result["params"]
    warmup = min(p["warmup_s"], p["duration_s"])
    if warmup > 0:
        ax.axvspan(0, warmup / 60, color=WARMUP_COLOR, alpha=0.2, lw=0, label="warm-up")
    for fault in result.get("faults") or []:
        ax.axvspan(
            fault["start_s"] / 60, fault["end_s"] / 60, color=FAULT_COLOR, alpha=0.15, lw=0, label=str(fault["what"])
        )


def hit_ratio_figure(result: dict[str, Any]) -> Any:
    series = result["runs"]["cached"]["series"]
    t = _minutes(series)
    fig, ax = _figure(8, 4)
    shade_windows(ax, result)
    shares = {tier: [_share(row, tier) for row in series] for tier in ("l0", "l1", "l2", "negative")}
    ax.stackplot(t, *shares.values(), labels=["L0", "L1", "L2", "negative cache"], alpha=0.75)
    ax.plot(t, [row["mw_hit_ratio"] for row in series], color="black", lw=1.2, label="mw_hit_ratio")
    for name, value in (("Week 1", 0.7), ("Week 2", 0.8)):
        ax.axhline(value, ls="--", lw=0.8, color="grey")
        ax.text(t[0] if t else 0, value + 0.01, name, fontsize=7, color="grey")
    ax.set(xlabel="simulated minutes", ylabel="share of requests", ylim=(0, 1.05), title="Hit ratio per tier")
    ax.legend(**LEGEND)
    return fig


def mlt_qps_figure(result: dict[str, Any]) -> Any:
    series = result["runs"]["cached"]["series"]
    baseline = result["runs"].get("baseline")
    fig, ax = _figure(8, 4)
    shade_windows(ax, result)
    ax.plot(_minutes(series), [row["mlt_qps"] for row in series], label="with cache")
    if baseline is not None:
        ax.plot(
            _minutes(baseline["series"]),
            [row["mlt_qps"] for row in baseline["series"]],
            label="caching disabled\n(MW_ENABLED=false)",
        )
    ax.set(xlabel="simulated minutes", ylabel="Mlt queries / s", title="Mlt QPS with and without the cache")
    ax.set_yscale("symlog")
    ax.legend(**LEGEND)
    return fig


def l0_size_figure(result: dict[str, Any]) -> Any:
    cached = result["runs"]["cached"]
    series = cached["series"]
    t = _minutes(series)
    fig, ax = _figure(8, 4)
    shade_windows(ax, result)
    ax.plot(t, [row["l0_items_max"] for row in series], label="largest agent L0")
    ax.plot(t, [row["l0_items_mean"] for row in series], label="mean agent L0")
    ax.axhline(cached["l0"]["bound_items"], color="red", ls="--", label="bound")
    ax.set(xlabel="simulated minutes", ylabel="items", title="L0 size against its bound")
    ax.legend(**LEGEND)
    return fig


def loads_per_expiry_figure(result: dict[str, Any]) -> Any:
    hist = {int(k): v for k, v in result["runs"]["cached"]["loads"]["loads_per_expiry_histogram"].items()}
    bars = bar_groups(hist or {1: 0})
    labels = list(bars)
    counts = [count for _, count in bars.values()]
    colors = ["tab:green" if low == 1 else "tab:red" for low, _ in bars.values()]
    title = "Loads per key per expiry"
    xlabel, ylabel = "Mlt loads in one expiry of a key", "expiries (key generations)"
    if len(bars) <= VERTICAL_MAX_BARS and max(map(len, labels)) <= VERTICAL_MAX_LABEL:
        fig, ax = _figure(6, 4)
        ax.bar(labels, counts, color=colors)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.set_yscale("log")
        return fig
    # Many bars or long bin labels: horizontal bars, one label per row, the figure as tall as the rows need.
    fig, ax = _figure(6, max(4.0, 1.2 + 0.3 * len(bars)))
    ax.barh(labels, counts, color=colors)
    ax.invert_yaxis()
    ax.set(xlabel=ylabel, ylabel=xlabel, title=title)
    ax.set_xscale("log")
    return fig


def bar_groups(hist: dict[int, int]) -> dict[str, tuple[int, int]]:
    """Bar label -> (lowest loads in the bar, expiries): one bar per count, or power-of-two bins when there are many.

    1 stays its own bar (the healthy case); the bins are 2, 3-4, 5-8, ... so a long tail stays a handful of bars.
    """
    if len(hist) <= MAX_PLAIN_BARS:
        return {str(k): (k, hist[k]) for k in sorted(hist)}
    groups: dict[str, tuple[int, int]] = {}
    for k in sorted(hist):
        high = k if k <= 2 else 1 << (k - 1).bit_length()  # the power of two at or above k
        low = k if k <= 2 else high // 2 + 1
        label = str(low) if low == high else f"{low}-{high}"
        groups[label] = (low, groups.get(label, (low, 0))[1] + hist[k])
    return groups


def _share(row: dict[str, Any], tier: str) -> float:
    return row[tier] / row["requests"] if row["requests"] else 0.0


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# --- markdown -------------------------------------------------------------------------------------------
def markdown(result: dict[str, Any], plots: dict[str, str]) -> str:
    cached = result["runs"]["cached"]
    p = result["params"]
    verdict = result["verdict"]
    lines = [
        f"# mw-sim: {result['scenario']} - {'PASS' if verdict['passed'] else 'FAIL'}"
        + (" (informational)" if result.get("informational") else ""),
        "",
        f"{result.get('description', '').strip()}",
        "",
    ]
    if result.get("informational"):
        outcome = "every check passed" if verdict["passed"] else "checks failed"
        lines += [
            f"*Informational scenario: its verdict is reported as measured ({outcome}) and does not set `mw-sim`'s "
            "exit code (0 either way).*",
            "",
        ]
    lines += [
        f"- agents {p['agents']} on {p['nodes']} nodes, {p['duration_s']:g} simulated s (warmup {p['warmup_s']:g} s), "
        f"seed {p['seed']}",
        f"- backend: {result['backend']}",
        f"- command: `{result.get('command', '')}`",
        "",
        "## Verdict",
        "",
        "| check | target | observed | result | by how much |",
        "|---|---|---|---|---|",
    ]
    for c in verdict["checks"]:
        lines.append(
            f"| {c['title']} | {c['target']} | {c['observed']} | {'pass' if c['passed'] else '**FAIL**'} | "
            f"{c['shortfall']} |"
        )
    lines += _config_section(result)
    hr = cached["hit_ratio"]
    mlt = result["mlt"]
    lines += [
        "",
        "## Cache effectiveness",
        "",
        f"- hit ratio observed by the simulator (judged; simulated s {hr['window'][0]:g}-{hr['window'][1]:g}): "
        f"**{hr['observed']:.4f}**; the runtime's `mw_hit_ratio` over the same window {hr['mw_hit_ratio']:.4f}; "
        f"requests answered without a load of their own: {hr['request_hit_ratio']:.4f}",
        f"- tier shares of requests: L0 {hr['tier_share']['l0']:.3f}, L1 {hr['tier_share']['l1']:.3f}, "
        f"L2 {hr['tier_share']['l2']:.3f}; negative-cache hits {cached['negative_cache_hits']}",
        f"- Mlt queries: {mlt['queries_cached']} with the cache"
        + (
            f", {mlt['queries_baseline']} with caching disabled: **{mlt['reduction']:.1%} fewer**"
            if mlt.get("queries_baseline")
            else ""
        ),
        f"- requests: {cached['requests']['total']} ({_outcomes(cached['requests']['outcomes'])})",
        f"- loads: {cached['loads']['loads']} in {cached['loads']['generations']} key expiries; lease waits "
        f"{cached['lease_waits']}; stale fills refused {cached['stale_sets_prevented']}; tier errors "
        f"{cached['tier_errors']}",
    ]
    prewarm = result.get("prewarm_effect")
    if prewarm:
        lines.append(
            f"- prewarm: {cached['prewarmed']} items prewarmed; hit ratio {prewarm['with']:.4f} with, "
            f"{prewarm['without']:.4f} without ({prewarm['delta']:+.4f})"
        )
        lines += _prewarm_hot_lines(prewarm)
    lines += _operations_section(cached)
    lines += _replay_section(result)
    lines += ["", f"![hit ratio per tier]({plots['hit_ratio']})", f"![Mlt QPS]({plots['mlt_qps']})", ""]
    lines += _tasks_section(cached)
    lines += _faults_section(cached)
    stale = cached["stale"]
    lines += [
        "",
        "## Stale reads",
        "",
        "Every read is judged against Mlt's versions and existence, values, `None` and negative-cache answers alike "
        f"({', '.join(f'{n} {what}' for what, n in stale['checked'].items())} reads, "
        f"{sum(stale.get('absent_answers', {}).values())} of them absent answers; tolerance "
        f"{', '.join(f'{what} {t:g} s' for what, t in stale.get('tolerance_s', {}).items()) or 'none'}): "
        f"stale within the bounds {sum(stale['stale_within_bounds'].values())}, beyond them **{stale['violations']}**.",
    ]
    doubt = stale.get("in_doubt", {})
    if doubt.get("writes"):
        lines.append(
            f"{doubt['writes']} writes failed in doubt (sent, unanswered: they may land later); Mlt's versions showed "
            f"{doubt['landed']} of them landed, {doubt['open']} records were still in doubt at the end; "
            f"{doubt['reads']} reads of records in doubt were taken as within the bounds."
        )
    for ex in stale["examples"]:
        lines.append(
            f"- {ex['what']} {ex['record']}: returned v{ex['returned']}, Mlt had v{ex['current']} (t={ex['t']})"
        )
    l0 = cached["l0"]
    hb = cached["heartbeats"]
    lines += [
        "",
        "## Memory, heartbeats, keys",
        "",
        f"- L0 per agent: max {l0['max_items']} items / {l0['max_bytes']} bytes (bound {l0['bound_items']} / "
        f"{l0['bound_bytes']})",
        f"- heartbeats: {hb['sent']} sent, {hb['expected']} expected, {hb['invalid']} invalid; fleet "
        f"`mw_hit_ratio` from the last heartbeats {hb['fleet']['mw_hit_ratio']:.4f}",
        f"- double-prefixed keys: {cached['double_prefix']['l2_keys']} in L2 "
        f"({cached['double_prefix']['scans']} scans), "
        f"{cached['double_prefix']['log_lines']} log lines of {cached['log_lines']}",
        f"- hot items: {', '.join(f'{name} ({count})' for name, count in cached['hot_items'][:5]) or 'none'}",
        "",
        f"![L0 size]({plots['l0_size']})",
        f"![loads per expiry]({plots['loads_per_expiry']})",
        "",
        "## Wall clock",
        "",
    ]
    for label, run in result["runs"].items():
        w = run["wall"]
        lines.append(
            f"- {label}: {w['simulate_s']:.1f} s simulating ({w['requests_per_s']:,.0f} requests/s), "
            f"{w['seed_s']:.1f} s seeding Mlt"
        )
    lines.append("")
    return "\n".join(lines)


def _faults_section(run: dict[str, Any]) -> list[str]:
    """The run's ``[[faults]]`` windows, what the seam did in them, and the errors callers got."""
    faults = run.get("faults") or {}
    if not faults.get("windows"):
        return []
    lines = ["", "## Faults", ""]
    errors = run.get("caller_errors") or {}
    longest = (run.get("waits") or {}).get("longest_s", 0)
    by_window = errors.get("by_window") or [{} for _ in faults["windows"]]
    for window, seen in zip(faults["windows"], by_window, strict=False):
        lines.append(
            f"- {window['what']}, simulated s {window['start_s']:g}-{window['end_s']:g}: caller errors "
            f"{seen.get('reads', 0)} reads, {seen.get('writes', 0)} writes ({seen.get('not_allowed', 0)} not allowed)"
        )
    lines.append(
        f"- L2 calls failed {faults.get('failed_l2_calls', 0)}, slowed {faults.get('slowed_l2_calls', 0)}; Mlt calls "
        f"failed {faults.get('failed_mlt_calls', 0)}; caller errors outside every window "
        f"{errors.get('outside_windows', 0)}; longest wait for an answer {longest:g} s"
    )
    leases = faults.get("crash_leases") or []
    if leases:
        taken = [r for r in leases if r["taken_over_at"] is not None]
        lines.append(
            f"- crashed agents left {len(leases)} leases; {len(taken)} keys loaded again after them, "
            f"{sum(r['answered'] for r in leases)} of {sum(r['readers'] for r in leases)} readers answered"
        )
    for ex in errors.get("examples") or []:
        lines.append(f"- not allowed: {ex['what']} at t={ex['t']}: {_cell(ex['error'])}")
    return lines


def _prewarm_hot_lines(effect: dict[str, Any]) -> list[str]:
    """The hot keys' figures with and without prewarming: hit ratio, Mlt loads on the read path and by prewarming."""
    hot = effect.get("hot")
    if not hot:
        return []
    w, wo = hot["with"], hot["without"]

    def fewer(figure: str) -> str:
        share = effect[f"hot_{figure}_fewer"]
        if share is None:
            return "n/a"
        return f"{share:.1%} fewer" if share >= 0 else f"{-share:.1%} more"

    return [
        f"- prewarm, the {effect['hot_keys']['n']} hot keys ({effect['hot_keys']['defined_by']}; "
        f"{w['reads']} reads with, {wo['reads']} without):",
        "",
        "  | hot keys | with prewarming | without | change |",
        "  |---|---|---|---|",
        f"  | hit ratio | {w['hit_ratio']:.4f} | {wo['hit_ratio']:.4f} | {effect['hot_hit_ratio_delta']:+.4f} |",
        f"  | Mlt loads on the read path (a reader waited) | {w['read_loads']} | {wo['read_loads']} | "
        f"{fewer('read_loads')} |",
        f"  | Mlt loads by prewarming | {w['prewarm_loads']} | {wo['prewarm_loads']} | |",
        f"  | Mlt loads all told | {w['mlt_loads']} | {wo['mlt_loads']} | {fewer('mlt_loads')} |",
        "",
    ]


def _replay_section(result: dict[str, Any]) -> list[str]:
    """A replay's trace, and its hit ratio in one cache of L0's capacity under the L0 policy and under LRU."""
    replay = result.get("replay")
    if not replay:
        return []
    single = replay["single_cache"]
    lines = [
        "",
        "## Trace replay",
        "",
        f"- trace: `{replay['trace']}` ({replay['format']}), {replay['requests']} requests to {replay['objects']} "
        f"objects over {replay['span_s']:g} s"
        + (f", {replay['bytes_of_objects']} bytes of objects" if replay["sized"] else ", no sizes"),
        f"- fleet `mw_hit_ratio` (above, after the warm-up): "
        f"{result['runs']['cached']['hit_ratio']['mw_hit_ratio']:.4f}",
        "",
        "One cache of L0's capacity over the whole trace (every request a lookup, a miss an insert):",
        "",
        "| bound | S3-FIFO (L0 policy) | LRU | S3-FIFO - LRU |",
        "|---|---|---|---|",
    ]
    bounds = [("items", f"{single['items']['max_items']} items")]
    if "bytes" in single:
        bounds.append(("bytes", f"{single['bytes']['max_items']} items and {single['bytes']['max_bytes']} bytes"))
    for bound, label in bounds:
        row = single[bound]
        cells = []
        for name in ("s3fifo", "lru"):
            cell = f"{row[name]['hit_ratio']:.4f}"
            if "byte_hit_ratio" in row[name]:
                cell += f" (bytes {row[name]['byte_hit_ratio']:.4f})"
            cells.append(cell)
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {row['s3fifo_minus_lru']:+.4f} |")
    return lines


def _operations_section(run: dict[str, Any]) -> list[str]:
    """How many of each runtime call the run made (``[mix]`` and the other tables decide the proportions)."""
    ops = run.get("operations")
    if not ops:
        return []
    lines = ["", "## Operations", "", "| operation | calls | stale beyond the bounds |", "|---|---|---|"]
    stale = ops.get("stale_beyond_bounds", {})
    lines += [f"| `{name}` | {n} | {stale.get(name, 0)} |" for name, n in ops["counts"].items() if n]
    batch = ops["batch"]
    if batch["keys"]:
        lines.append(
            f"\nBatches asked for {batch['keys']} ids: {batch['values']} answered by a tier, {batch['followups']} "
            "left out and then read by key."
        )
    return lines


def _outcomes(o: dict[str, int]) -> str:
    return ", ".join(f"{k} {o[k]}" for k in ("l0", "l1", "l2", "negative", "coalesced", "load"))


def _tasks_section(run: dict[str, Any]) -> list[str]:
    ttls = run["task_ttls"]
    if not ttls:
        return []
    lines = [
        "## Task TTL compliance",
        "",
        f"{run['tasks'].get('created', 0)} tasks, {run['tasks'].get('transitions', 0)} status changes "
        "(each an Mlt write followed by an invalidation).",
        "",
        "| status | cached | max TTL applied (s) | max remaining life when served (s) | max L2 life by PTTL (s) |",
        "|---|---|---|---|---|",
    ]
    for status, row in ttls.items():
        lines.append(
            f"| {status} | {row['cached']} | {row['max_ttl_applied_s']} | {row['max_remaining_when_served_s']} | "
            f"{row['max_l2_life_s'] or '-'} |"
        )
    return lines


# Sources a reader must see first: what the environment and the overrides changed against the scenario.
SOURCE_ORDER = ("env", "override", "simulator", "scenario", "default")


def _config_section(result: dict[str, Any]) -> list[str]:
    """The cached run's effective configuration, each value with its source; defaults on one line at the end."""
    rows: dict[str, dict[str, Any]] = result["runs"]["cached"]["config"]
    rank = {name: SOURCE_ORDER.index(row["source"].split()[0]) for name, row in rows.items()}
    lines = [
        "",
        "## Configuration",
        "",
        "Effective settings of the cached run, lowest layer first: MwConfig default < scenario `[runtime]` < `MW_*` "
        "environment < simulator < override. Rows the environment or an override set come first, in bold.",
        "",
        "| setting | value | source | note |",
        "|---|---|---|---|",
    ]
    defaults = []
    for name in sorted(rows, key=lambda n: rank[n]):
        row = rows[name]
        if row["source"] == "default":
            defaults.append(f"`{name}={json.dumps(row['value'])}`")
            continue
        source = f"**{row['source']}**" if rank[name] < 2 else row["source"]
        lines.append(f"| `{name}` | {_value(row['value'])} | {source} | {_cell(row.get('note', ''))} |")
    if defaults:
        lines += ["", f"Defaults: {', '.join(defaults)}."]
    for label, run in result["runs"].items():
        differs = [
            f"`{name}` {_value(row['value'])} ({row['source']})"
            for name, row in run["config"].items()
            if name not in ("namespace", "rng_seed") and row["value"] != rows.get(name, {}).get("value")
        ]
        if label != "cached" and differs:
            lines += ["", f"The {label} run differs in (besides its own namespace and seed): {', '.join(differs)}."]
    return lines


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
