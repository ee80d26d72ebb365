"""The report's plots (matplotlib, Agg backend: no display needed): trade-off, bars, training curves."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib.text import Text
from matplotlib.transforms import Bbox

from peftkit.compare.report.tables import Row, RunRecord, is_fraction


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: never try to open a window (CI, servers, the device machine)
    import matplotlib.pyplot as plt

    return plt


def _colors(methods: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def _save(fig: Any, path: Path, layout: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _log_x(ax: Any, xs: list[float]) -> None:
    """Log x axis with plain numbers (0.1, 1, 10), room for the point labels, minor labels only within a decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = min(xs), max(xs)
    ax.set_xlim(lo / 1.6, hi * 2.2)  # the right margin leaves space for the label next to the last point
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain if hi / lo < 10 else NullFormatter())


def _task_panels(rows: list[Row], height: float) -> tuple[float, list[str], dict[str, Any], Any, Any]:
    """One subplot per task: (scale to %, tasks, color per method, figure, axes grid)."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(r.task for r in rows))
    nr, nc = _grid(len(tasks))
    fig, axes = plt.subplots(nr, nc, figsize=(4.6 * nc, height * nr), squeeze=False)
    colors = _colors(list(dict.fromkeys(r.method for r in rows)))
    return (100.0 if is_fraction(rows) else 1.0), tasks, colors, fig, axes


def _metric_label(rows: list[Row], task: str, k: float, split: str) -> str:
    return f"{split} " + next(r.metric for r in rows if r.task == task) + (" (%)" if k == 100 else "")


def _hide_unused(axes: Any, used: int) -> None:
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)


def tradeoff(rows: list[Row], path: Path, split: str = "dev") -> Path:
    """Per task: metric (mean ± std) against trainable parameters in %, log x, each point named."""
    k, tasks, colors, fig, axes = _task_panels(rows, 3.8)
    for ax, task in zip(axes.flat, tasks):
        for r in (r for r in rows if r.task == task):
            ax.errorbar(
                r.trainable_percent,
                r.mean * k,
                yerr=(r.std or 0) * k,
                fmt="o",
                capsize=3,
                color=colors[r.method],
                label=r.method,
                markersize=7 if not r.best else 10,
            )
        _log_x(ax, [r.trainable_percent for r in rows if r.task == task])
        ax.set_xlabel("trainable parameters (%)")
        ax.set_ylabel(_metric_label(rows, task, k, split))
        ax.set_title(task)
        ax.grid(True, which="both", alpha=0.3)
    _hide_unused(axes, len(tasks))
    fig.tight_layout()  # before the names: placing them needs the panels' final size
    for ax, task in zip(axes.flat, tasks):
        label_points(
            ax, [(r.trainable_percent, r.mean * k, r.method, colors[r.method]) for r in rows if r.task == task]
        )
    return _save(fig, path, layout=False)


LABEL_PT = 8  # font size of a point's name
MARKER_PT = 5  # half the largest marker (markersize 10): a name must not cover another method's point
SAME_POINT_PX = 2.0  # points closer than this on screen are one point: they share one name
USUAL_OFFSET = (5.0, 4.0)  # a name's place, in points from its point, when nothing is in the way: right, above
Point = tuple[float, float, str, Any]  # x, y, name, color


def _coinciding(ax: Any, points: list[Point]) -> list[Point]:
    """Points that land on the same spot (tied metric and parameter share) as one point named ``"lora, ia3"``,
    in black, since no one method's color fits it."""
    groups: list[tuple[Any, Point, list[str]]] = []  # (screen position, first point, names)
    for p in points:
        at = ax.transData.transform(p[:2])
        same = next((g for g in groups if max(abs(g[0] - at)) < SAME_POINT_PX), None)
        if same:
            same[2].append(p[2])
        else:
            groups.append((at, p, [p[2]]))
    return [
        (p[0], p[1], ", ".join(dict.fromkeys(names)), p[3] if len(names) == 1 else "black") for _, p, names in groups
    ]


def _offsets(line: float, lines: int) -> list[tuple[float, float, str]]:
    """Where a name may go, nearest first, in points from its point: right of it, a line up or down, left of it,
    then further up or down (up to ``lines`` lines) on either side."""
    dx, dy = USUAL_OFFSET
    out = [
        (dx, dy, "left"),
        (dx, dy + line, "left"),
        (dx, dy - line, "left"),
        (-dx, dy, "right"),
        (-dx, dy + line, "right"),
        (-dx, dy - line, "right"),
    ]
    for n in range(2, lines + 1):
        for side, ha in ((dx, "left"), (-dx, "right")):
            out += [(side, dy + n * line, ha), (side, dy - n * line, ha)]
    return out


def _text_box(ann: Any, renderer: Any) -> Any:
    """The screen box of an annotation's text alone (not its line back to the point), at its current offset."""
    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _free_offset(probe: Any, renderer: Any, frame: Any, others: list[Any]) -> tuple[float, float, str]:
    """The nearest offset at which the probe's text covers none of ``others`` and stays inside ``frame``; else the
    nearest that covers none of them; else the usual one (right of the point)."""
    px = probe.figure.dpi / 72.0
    line = _text_box(probe, renderer).height / px + 1
    fallback = None
    for dx, dy, ha in _offsets(line, math.ceil(frame.height / px / line)):
        probe.xyann = (dx, dy)
        probe.set_horizontalalignment(ha)
        box = _text_box(probe, renderer)
        if any(box.overlaps(o) for o in others):
            continue
        if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1):
            return dx, dy, ha
        fallback = fallback or (dx, dy, ha)
    return fallback or (*USUAL_OFFSET, "left")


def label_points(ax: Any, points: list[Point]) -> list[Any]:
    """Name each point, in its color, without names covering each other or another point: tied points share one
    name; a name with no room right of its point goes left of it or a line up or down, with a line back to the
    point. Call once the figure's layout is final. Returns the annotations."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    r = MARKER_PT * ax.figure.dpi / 72.0
    named = sorted(_coinciding(ax, points), key=lambda p: (p[0], -p[1]))  # a column top down: leader lines don't cross
    spots = [ax.transData.transform((x, y)) for x, y, *_ in named]
    markers = [Bbox.from_extents(sx - r, sy - r, sx + r, sy + r) for sx, sy in spots]
    out: list[Any] = []
    for i, (x, y, name, color) in enumerate(named):
        others = [_text_box(a, renderer) for a in out] + [m for j, m in enumerate(markers) if j != i]
        probe = ax.annotate(name, (x, y), textcoords="offset points", xytext=USUAL_OFFSET, fontsize=LABEL_PT)
        dx, dy, ha = _free_offset(probe, renderer, frame, others)
        probe.remove()
        moved = (
            {}
            if (dx, dy) == USUAL_OFFSET
            else {"arrowprops": {"arrowstyle": "-", "color": color, "lw": 0.8, "shrinkA": 1, "shrinkB": 4}}
        )
        out.append(
            ax.annotate(
                name,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha=ha,
                fontsize=LABEL_PT,
                color=color,
                **moved,
            )
        )
    return out


def _bar_values(rows: list[Row], avg: dict[str, Any], groups: list[str], m: str) -> list[tuple[int, float, float, str]]:
    """(group index, mean, std or 0, mark: ★ best, † collapsed, or "") of method m in each group it has a value for."""
    cell = {(r.task, r.method): r for r in rows}
    out = []
    for g, task in enumerate(groups):
        if task == "average":
            if m in avg["by_method"]:
                mark = "★" if m in avg["best"] else "†" if m in avg.get("collapsed", ()) else ""
                out.append((g, avg["by_method"][m], 0.0, mark))
        elif (task, m) in cell:
            r = cell[(task, m)]
            out.append((g, r.mean, r.std or 0.0, "★" if r.best else "†" if r.collapsed else ""))
    return out


def bars(rows: list[Row], avg: dict[str, Any], path: Path, split: str = "dev") -> Path:
    """Grouped bars: one group per task (+ the average), one bar per method, error bars = std over seeds, ★ = best."""
    plt = _pyplot()
    k = 100.0 if is_fraction(rows) else 1.0
    methods = list(dict.fromkeys(r.method for r in rows))
    groups = list(dict.fromkeys(r.task for r in rows)) + (["average"] if avg["by_method"] else [])
    colors = _colors(methods)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 0.6 * len(groups) * len(methods) + 2)), 4.2))
    highs: list[float] = []
    for i, m in enumerate(methods):
        vals = [
            (g + (i - (len(methods) - 1) / 2) * width, v * k, e * k, best)
            for g, v, e, best in _bar_values(rows, avg, groups, m)
        ]
        ax.bar([x for x, *_ in vals], [y for _, y, *_ in vals], width * 0.95, color=colors[m], label=m)
        for x, y, e, mark in vals:
            if e > 0:  # no error bar for a single seed or for the average
                ax.errorbar(x, y, yerr=e, fmt="none", ecolor="black", capsize=2, linewidth=1)
            if mark:
                ax.annotate(mark, (x, y + e), textcoords="offset points", xytext=(0, 1), ha="center", fontsize=9)
            highs.append(y + e)
    ax.set_xticks(range(len(groups)), groups)
    # Bars start at 0: a cut axis makes a bar's height lie about its value (the table gives exact numbers,
    # the trade-off plot zooms per task).
    ax.set_ylim(0.0, max(highs) * 1.08 if highs and max(highs) > 0 else 1.0)
    names = list(dict.fromkeys(r.metric for r in rows))
    label = f"{split} " + (names[0] if len(names) == 1 else "metric") + (" (%)" if k == 100 else "")
    marks = (["★ = best"] if any(r.best for r in rows) or avg["best"] else []) + (
        ["† = a seed collapsed to one class"] if any(r.collapsed for r in rows) else []
    )
    ax.set_ylabel("; ".join([label, *marks]))
    ax.legend(fontsize=8, ncol=min(len(methods), 6), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _curve(runs: list[RunRecord], metric: str) -> tuple[list[int], list[float], list[float]]:
    """Mean and std of the dev metric at each evaluated step, over the seeds that have that step."""
    at: dict[int, list[float]] = {}
    for r in runs:
        for h in r.metrics.get("history") or []:
            if metric in h and "step" in h:
                at.setdefault(int(h["step"]), []).append(float(h[metric]))
    steps = sorted(at)
    return (
        steps,
        [statistics.fmean(at[s]) for s in steps],
        [statistics.stdev(at[s]) if len(at[s]) > 1 else 0.0 for s in steps],
    )


def curves(runs: list[RunRecord], rows: list[Row], path: Path) -> Path:
    """Per task: dev metric over optimizer steps, one line per method (mean over seeds, band ± std)."""
    k, tasks, colors, fig, axes = _task_panels(rows, 3.6)
    for ax, task in zip(axes.flat, tasks):
        for row in (r for r in rows if r.task == task):
            mine = [r for r in runs if r.task == task and r.method == row.method]
            steps, mean, std = _curve(mine, row.metric)
            if not steps:
                continue
            ys = [m * k for m in mean]
            ax.plot(steps, ys, marker="o", markersize=3, color=colors[row.method], label=row.method)
            ax.fill_between(
                steps,
                [y - s * k for y, s in zip(ys, std)],
                [y + s * k for y, s in zip(ys, std)],
                color=colors[row.method],
                alpha=0.15,
                linewidth=0,
            )
        ax.set_title(task)
        ax.set_xlabel("optimizer step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(_metric_label(rows, task, k, "dev"))  # the curves are the dev evaluations during training
        ax.grid(True, alpha=0.3)
    _hide_unused(axes, len(tasks))
    by_label: dict[str, Any] = {}
    for ax in axes.flat:  # every method, also those that ran on some tasks only
        for h, label in zip(*ax.get_legend_handles_labels()):
            by_label.setdefault(label, h)
    handles, labels = list(by_label.values()), list(by_label)
    if handles:  # one legend for all panels, below them, so no panel's lines are hidden
        fig.legend(handles, labels, fontsize=8, ncol=min(len(labels), 6), loc="lower center")
        fig.tight_layout(rect=(0, 0.1 if axes.shape[0] == 1 else 0.05, 1, 1))
    return _save(fig, path, layout=not handles)


def draw_all(
    runs: list[RunRecord], rows: list[Row], avg: dict[str, Any], out: Path, split: str = "dev"
) -> dict[str, Path]:
    """Every plot, as PNG files under ``out``; returns {name: path}. ``split`` names what the rows compare."""
    return {
        "tradeoff": tradeoff(rows, out / "tradeoff.png", split),
        "bars": bars(rows, avg, out / "bars.png", split),
        "curves": curves(runs, rows, out / "curves.png"),
    }
