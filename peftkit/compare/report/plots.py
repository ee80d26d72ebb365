"""The report's plots (matplotlib, Agg backend: no display needed): trade-off, bars, training curves, searches."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from peftkit.compare.report.labels import label_points
from peftkit.compare.report.runs import RunRecord, SearchRecord
from peftkit.compare.report.tables import Row, is_fraction


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
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a legend below the axes is never cut off
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


def bar_groups(rows: list[Row], avg: dict[str, Any]) -> list[str]:
    """The bar plot's groups: the tasks, then "average" when there are several (one task's average is itself)."""
    tasks = list(dict.fromkeys(r.task for r in rows))
    return tasks + (["average"] if avg["by_method"] and len(tasks) > 1 else [])


def bars(rows: list[Row], avg: dict[str, Any], path: Path, split: str = "dev") -> Path:
    """Grouped bars: one group per task (+ the average of several tasks), one bar per method, error bars = std
    over seeds, ★ = best."""
    plt = _pyplot()
    k = 100.0 if is_fraction(rows) else 1.0
    methods = list(dict.fromkeys(r.method for r in rows))
    groups = bar_groups(rows, avg)
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


def has_curves(runs: list[RunRecord]) -> bool:
    """Whether some run evaluated dev at two steps or more: else the curves plot would show one dot a method."""
    return any(len({h.get("step") for h in r.metrics.get("history") or []}) > 1 for r in runs)


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
        cols = min(len(labels), 3 * axes.shape[1], 6)  # a narrow figure (one task) gets a taller legend
        fig.legend(handles, labels, fontsize=8, ncol=cols, loc="lower center")
        fig.tight_layout(rect=(0, 0.1 if axes.shape[0] == 1 else 0.05, 1, 1))
    return _save(fig, path, layout=not handles)


def _searched_axis(s: SearchRecord) -> tuple[str, bool]:
    """The key a search plot puts on x (the first searched), and whether a log axis suits it."""
    key, spec = next(iter(s.space.items()))
    values = [t["params"][key] for t in s.trials]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if isinstance(spec, dict):
        return key, bool(spec.get("log"))
    return key, numeric and min(values) > 0 and max(values) / min(values) >= 10


def search(searches: list[SearchRecord], pct: bool, path: Path) -> Path:
    """Per task: each trial's score against the first searched key, a line per method, ★ = the chosen trial."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(s.task for s in searches))
    nr, nc = _grid(len(tasks))
    fig, axes = plt.subplots(nr, nc, figsize=(4.6 * nc, 3.6 * nr), squeeze=False)
    colors = _colors(list(dict.fromkeys(s.method for s in searches)))
    for ax, task in zip(axes.flat, tasks):
        for s in (s for s in searches if s.task == task):
            key, log = _searched_axis(s)
            k = 100.0 if pct and not s.metric.endswith("loss") else 1.0
            points = sorted((t["params"][key], t["value"] * k, t["params"] == s.chosen) for t in s.scored)
            if not points or not all(isinstance(x, (int, float)) for x, *_ in points):
                continue  # a non-numeric key (a list of module names) has no axis to plot on
            ax.plot([x for x, *_ in points], [y for _, y, _ in points], "o-", color=colors[s.method], label=s.method)
            for x, y, chosen in points:
                if chosen:
                    ax.plot(x, y, marker="*", markersize=14, color=colors[s.method], markeredgecolor="black")
            if log:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(f"{s.metric} on {s.split}" + (" (%)" if k == 100 else ""))
        ax.set_title(task)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    _hide_unused(axes, len(tasks))
    return _save(fig, path)


def draw_all(
    runs: list[RunRecord],
    rows: list[Row],
    avg: dict[str, Any],
    out: Path,
    split: str = "dev",
    searches: list[SearchRecord] = (),
) -> dict[str, Path]:
    """Every plot, as PNG files under ``out``; returns {name: path}. ``split`` names what the rows compare."""
    plots = {
        "tradeoff": tradeoff(rows, out / "tradeoff.png", split),
        "bars": bars(rows, avg, out / "bars.png", split),
    }
    if has_curves(runs):  # a run evaluated once (one epoch, eval.every: epoch) has a point, not a curve
        plots["curves"] = curves(runs, rows, out / "curves.png")
    if any(s.scored for s in searches):
        plots["search"] = search([s for s in searches if s.scored], is_fraction(rows), out / "search.png")
    for name in ("curves", "search"):  # a plot an earlier report of this folder drew and this one does not
        if name not in plots:
            (out / f"{name}.png").unlink(missing_ok=True)
    return plots
