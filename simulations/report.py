"""The outputs of an invocation: ``result.json``, ``report.md`` and PNG plots (matplotlib, Agg) in one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOTS = {
    "hit_ratio": "hit_ratio.png",
    "mlt_qps": "mlt_qps.png",
    "l0_size": "l0_size.png",
    "loads_per_expiry": "loads_per_expiry.png",
}


def write_all(result: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "result.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    plots = write_plots(result, out)
    paths["markdown"].write_text(markdown(result, {k: p.name for k, p in plots.items()}), encoding="utf-8")
    return {**paths, **plots}


# --- plots ----------------------------------------------------------------------------------------------
def write_plots(result: dict[str, Any], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cached = result["runs"]["cached"]
    baseline = result["runs"].get("baseline")
    series = cached["series"]
    t = [row["t"] / 60 for row in series]
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(8, 4))
    shares = {tier: [_share(row, tier) for row in series] for tier in ("l0", "l1", "l2", "negative")}
    ax.stackplot(t, *shares.values(), labels=["L0", "L1", "L2", "negative cache"], alpha=0.75)
    ax.plot(t, [row["mw_hit_ratio"] for row in series], color="black", lw=1.2, label="mw_hit_ratio")
    for name, value in (("Week 1", 0.7), ("Week 2", 0.8)):
        ax.axhline(value, ls="--", lw=0.8, color="grey")
        ax.text(t[0] if t else 0, value + 0.01, name, fontsize=7, color="grey")
    ax.set(xlabel="simulated minutes", ylabel="share of requests", ylim=(0, 1.05), title="Hit ratio per tier")
    ax.legend(loc="lower right", fontsize=7)
    paths["hit_ratio"] = _save(fig, out / PLOTS["hit_ratio"])

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [row["mlt_qps"] for row in series], label="with cache")
    if baseline is not None:
        bt = [row["t"] / 60 for row in baseline["series"]]
        ax.plot(bt, [row["mlt_qps"] for row in baseline["series"]], label="caching disabled (MW_ENABLED=false)")
    ax.set(xlabel="simulated minutes", ylabel="Mlt queries / s", title="Mlt QPS with and without the cache")
    ax.set_yscale("symlog")
    ax.legend(fontsize=7)
    paths["mlt_qps"] = _save(fig, out / PLOTS["mlt_qps"])

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [row["l0_items_max"] for row in series], label="largest agent L0")
    ax.plot(t, [row["l0_items_mean"] for row in series], label="mean agent L0")
    ax.axhline(cached["l0"]["bound_items"], color="red", ls="--", label="bound")
    ax.set(xlabel="simulated minutes", ylabel="items", title="L0 size against its bound")
    ax.legend(fontsize=7)
    paths["l0_size"] = _save(fig, out / PLOTS["l0_size"])

    fig, ax = plt.subplots(figsize=(6, 4))
    hist = cached["loads"]["loads_per_expiry_histogram"]
    keys = [int(k) for k in hist] or [1]
    ax.bar(
        [str(k) for k in keys],
        [hist.get(str(k), 0) for k in keys],
        color=["tab:green" if k == 1 else "tab:red" for k in keys],
    )
    ax.set(
        xlabel="Mlt loads in one expiry of a key", ylabel="expiries (key generations)", title="Loads per key per expiry"
    )
    ax.set_yscale("log")
    paths["loads_per_expiry"] = _save(fig, out / PLOTS["loads_per_expiry"])
    plt.close("all")
    return paths


def _share(row: dict[str, Any], tier: str) -> float:
    return row[tier] / row["requests"] if row["requests"] else 0.0


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# --- markdown -------------------------------------------------------------------------------------------
def markdown(result: dict[str, Any], plots: dict[str, str]) -> str:
    cached = result["runs"]["cached"]
    p = result["params"]
    verdict = result["verdict"]
    lines = [
        f"# mw-sim: {result['scenario']} - {'PASS' if verdict['passed'] else 'FAIL'}",
        "",
        f"{result.get('description', '').strip()}",
        "",
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
    hr = cached["hit_ratio"]
    mlt = result["mlt"]
    lines += [
        "",
        "## Cache effectiveness",
        "",
        f"- `mw_hit_ratio` (runtime counters, simulated s {hr['window'][0]:g}-{hr['window'][1]:g}): "
        f"**{hr['mw_hit_ratio']:.4f}**; requests answered without a load of their own: {hr['request_hit_ratio']:.4f}",
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
    lines += ["", f"![hit ratio per tier]({plots['hit_ratio']})", f"![Mlt QPS]({plots['mlt_qps']})", ""]
    lines += _tasks_section(cached)
    stale = cached["stale"]
    lines += [
        "",
        "## Stale reads",
        "",
        f"Every task row and every read of an item written during the run is judged against Mlt's versions: "
        f"{stale['checked']['task']} task and {stale['checked']['item']} item reads; stale within the bounds "
        f"{sum(stale['stale_within_bounds'].values())}, beyond them **{stale['violations']}**.",
    ]
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
