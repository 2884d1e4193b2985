"""The report's plots, inspected as matplotlib artists (not pixels): the warm-up and fault windows are shaded, legends
sit outside the data area, and bar labels do not collide however many bars there are."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from simulations import report

pytest.importorskip("matplotlib")

TIME_FIGURES = [report.hit_ratio_figure, report.mlt_qps_figure, report.l0_size_figure]


def _result(*, warmup_s: float = 60.0, histogram: dict[int, int] | None = None, **extra: Any) -> dict[str, Any]:
    """The parts of a ``result.json`` the plots read: a 5-minute run sampled every 20 s, with a baseline."""
    series = [
        {
            "t": t,
            "requests": 100,
            "l0": 50,
            "l1": 10,
            "l2": 20,
            "negative": 5,
            "mw_hit_ratio": 0.85,
            "mlt_qps": 3.0,
            "l0_items_max": 40,
            "l0_items_mean": 30,
        }
        for t in range(0, 301, 20)
    ]
    hist = histogram if histogram is not None else {1: 500, 2: 3}
    cached = {
        "series": series,
        "l0": {"bound_items": 64},
        "loads": {"loads_per_expiry_histogram": {str(k): v for k, v in hist.items()}},
    }
    baseline = {"series": [{**row, "mlt_qps": 40.0} for row in series]}
    return {
        "params": {"duration_s": 300.0, "warmup_s": warmup_s},
        "runs": {"cached": cached, "baseline": baseline},
        **extra,
    }


def _spans(fig: Any) -> dict[str, tuple[float, float]]:
    """Label -> (x0, x1) in data units of every shaded vertical span (axvspan's rectangles)."""
    ax = fig.axes[0]
    return {
        patch.get_label(): (patch.get_x(), patch.get_x() + patch.get_width())
        for patch in ax.patches
        if not patch.get_label().startswith("_")
    }


def _pairwise_overlaps(boxes: list[Any]) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2) if a.overlaps(b)]


def _tick_label_boxes(fig: Any) -> list[Any]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [*ax.get_xticklabels(), *ax.get_yticklabels()]
    return [label.get_window_extent(renderer) for label in labels if label.get_text() and label.get_visible()]


@pytest.mark.parametrize("figure", TIME_FIGURES)
def test_warmup_is_shaded_and_labelled(figure: Any) -> None:
    fig = figure(_result(warmup_s=90.0))
    assert _spans(fig) == {"warm-up": (0.0, 1.5)}  # minutes
    assert "warm-up" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


@pytest.mark.parametrize("figure", TIME_FIGURES)
def test_no_warmup_no_span(figure: Any) -> None:
    assert _spans(figure(_result(warmup_s=0.0))) == {}


def test_warmup_longer_than_the_run_is_cut_at_its_end() -> None:
    assert _spans(report.hit_ratio_figure(_result(warmup_s=900.0))) == {"warm-up": (0.0, 5.0)}


@pytest.mark.parametrize("figure", TIME_FIGURES)
def test_fault_windows_are_shaded_when_the_result_has_them(figure: Any) -> None:
    faults = [
        {"start_s": 120.0, "end_s": 150.0, "what": "Redis down"},
        {"start_s": 240.0, "end_s": 270.0, "what": "Mlt slow"},
    ]
    spans = _spans(figure(_result(faults=faults)))
    assert spans == {"warm-up": (0.0, 1.0), "Redis down": (2.0, 2.5), "Mlt slow": (4.0, 4.5)}
    assert _spans(figure(_result(faults=[]))) == {"warm-up": (0.0, 1.0)}


@pytest.mark.parametrize("figure", TIME_FIGURES)
def test_legend_is_outside_the_axes(figure: Any) -> None:
    fig = figure(_result(faults=[{"start_s": 120.0, "end_s": 150.0, "what": "Redis down"}]))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_legend_check_sees_a_legend_inside() -> None:
    fig = report.l0_size_figure(_result())
    ax = fig.axes[0]
    ax.legend(loc="lower right")  # where the legends used to be: on the data
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_saved_plot_keeps_the_outside_legend(tmp_path: Path) -> None:
    fig = report.l0_size_figure(_result())
    narrow = tmp_path / "l0.png"
    report._save(fig, narrow)
    from matplotlib.image import imread

    height, width = imread(narrow).shape[:2]
    assert width / height > 8 / 4  # wider than the 8x4 figure: the legend beside it was kept, not cut off


@pytest.mark.parametrize(
    "histogram",
    [
        {1: 900, 2: 4},
        {k: 1 for k in range(1, 9)},
        {k: 1 for k in range(100_000, 100_012)},  # 12 plain bars with six-digit labels
        {k: 1 for k in range(1, 201)},  # many counts: binned
        {1: 10, 3: 1, 40: 1, 700: 1, 9_000: 1, 70_000: 1, 1 << 20: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1},
    ],
    ids=["two", "eight", "twelve-wide", "two-hundred", "long-tail"],
)
def test_bar_labels_never_overlap(histogram: dict[int, int]) -> None:
    boxes = _tick_label_boxes(report.loads_per_expiry_figure(_result(histogram=histogram)))
    assert boxes
    assert _pairwise_overlaps(boxes) == []


def test_overlap_check_sees_crowded_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    # The old layout: every count its own vertical bar, whatever the count.
    monkeypatch.setattr(report, "MAX_PLAIN_BARS", 10_000)
    monkeypatch.setattr(report, "VERTICAL_MAX_BARS", 10_000)
    monkeypatch.setattr(report, "VERTICAL_MAX_LABEL", 10_000)
    fig = report.loads_per_expiry_figure(_result(histogram={k: 1 for k in range(100_000, 100_040)}))
    assert _pairwise_overlaps(_tick_label_boxes(fig))


def test_many_counts_are_binned_by_powers_of_two() -> None:
    groups = report.bar_groups({k: 1 for k in range(1, 41)})
    assert groups == {
        "1": (1, 1),
        "2": (2, 1),
        "3-4": (3, 2),
        "5-8": (5, 4),
        "9-16": (9, 8),
        "17-32": (17, 16),
        "33-64": (33, 8),
    }
    assert sum(count for _, count in groups.values()) == 40
    assert report.bar_groups({1: 7, 3: 2}) == {"1": (1, 7), "3": (3, 2)}  # few counts: one bar each


def test_write_plots_writes_every_plot(tmp_path: Path) -> None:
    faults = [{"start_s": 120.0, "end_s": 150.0, "what": "Redis down"}]
    paths = report.write_plots(_result(faults=faults, histogram={k: 1 for k in range(1, 60)}), tmp_path)
    assert set(paths) == set(report.PLOTS)
    for path in paths.values():
        assert path.stat().st_size > 1000
