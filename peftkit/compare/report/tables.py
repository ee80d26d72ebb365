"""Reports from finished run dirs: per task and method, the metric's mean ± std over seeds, cost, plots.

Run dirs are read by :mod:`peftkit.compare.report.runs`; this module aggregates them into rows (mean, std,
95% t-interval, macro-F1 beside accuracy), the CLUE-style average, CSV and JSON, and writes the report.
Outputs in the report folder: ``report.md``, ``report.csv``, ``report.json``, ``report.html`` (plots
embedded, a single file to mail around) and ``plots/*.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import statistics
from dataclasses import dataclass, field
from typing import Any

from peftkit.compare.report.runs import RunRecord
from peftkit.compare.report.stats import INTERVAL, not_separated, t_interval
from peftkit.errors import PeftkitError
from peftkit.evaluation.metrics import COLLAPSED_SHARE

log = logging.getLogger("peftkit")
F1 = "f1_macro"
# accuracy and macro-F1 this far apart (in some method's mean) say the classes, or the answers, are
# imbalanced: accuracy alone would flatter a model that mostly answers the majority class
F1_GAP = 0.05


@dataclass
class Row:
    """One (task, method) cell of the table, aggregated over seeds."""

    task: str
    method: str
    method_name: str
    metric: str
    seeds: list[int]
    values: list[float]
    trainable: int
    total: int
    trainable_percent: float
    peak_memory_bytes: float
    train_seconds: float
    samples_per_second: float
    lr: float | None
    runs: list[str] = field(default_factory=list)
    best: bool = False
    collapsed: bool = False  # some seed answers one class for >= COLLAPSED_SHARE of dev (runs that record it)
    f1: list[float] = field(default_factory=list)  # macro-F1 per seed, when the compared metric is another one
    searched: dict[str, Any] = field(default_factory=dict)  # values the grid's search chose for this cell

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n − 1); None for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """The 95% t-interval of the mean (:mod:`peftkit.compare.report.stats`); None for a single seed."""
        return t_interval(self.values)

    @property
    def f1_mean(self) -> float | None:
        return statistics.fmean(self.f1) if self.f1 else None

    @property
    def f1_std(self) -> float | None:
        return statistics.stdev(self.f1) if len(self.f1) > 1 else None


def shows_f1(rows: list[Row], task: str) -> bool:
    """Whether the summary shows macro-F1 beside accuracy for a task: accuracy is compared, and it is at least
    F1_GAP away from macro-F1 in some method's mean (imbalanced classes, or answers skewed to one class)."""
    mine = [r for r in rows if r.task == task and r.metric == "accuracy" and r.f1]
    return any(abs(r.mean - (r.f1_mean or 0.0)) >= F1_GAP for r in mine)


# ------------------------------------------------------------------------------------------ tables


def task_metric(run: RunRecord, metric: str | None) -> str:
    """The metric compared for a run: the one asked for, else eval.metric, else the task's main metric."""
    chosen = metric or (run.recipe.get("eval") or {}).get("metric")
    if not chosen:
        from peftkit.plugin.registry import get_registry

        task = get_registry().tasks.get(run.recipe["task"]["name"])
        chosen = getattr(task, "metric", None) or ("accuracy" if "accuracy" in run.scores else next(iter(run.scores)))
    if chosen not in run.scores:
        raise PeftkitError(
            f"{run.path}: metric {chosen!r} is not in its {run.section} metrics ({', '.join(run.scores)}); "
            "choose another with --metric"
        )
    return chosen


def summarize(runs: list[RunRecord], metric: str | None = None) -> list[Row]:
    """One row per (task, method) in first-seen order, the best mean per task marked."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.task, r.method), []).append(r)
    rows = [_row(task, method, sorted(g, key=lambda r: r.seed), metric) for (task, method), g in groups.items()]
    for task in dict.fromkeys(r.task for r in rows):
        mine = [r for r in rows if r.task == task]
        live = [r for r in mine if not r.collapsed]
        if len(mine) < 2 or not live:
            continue  # one method, or only collapsed ones: nothing is "best"
        pick = max if higher_is_better(mine[0].metric) else min
        best = pick(r.mean for r in live)
        if all(abs(r.mean - best) < 1e-12 for r in mine):
            continue  # every method ties: marking all of them best would say nothing
        for r in live:
            r.best = abs(r.mean - best) < 1e-12
    return rows


def higher_is_better(metric: str) -> bool:
    """Every task metric is higher-is-better except losses (``eval_loss``), which a user may compare too."""
    return not metric.endswith("loss")


def _row(task: str, method: str, group: list[RunRecord], metric: str | None) -> Row:
    names = {task_metric(r, metric) for r in group}
    if len(names) > 1:
        raise PeftkitError(
            f"runs of {task}/{method} select different metrics ({', '.join(sorted(names))}); pass --metric"
        )
    m = names.pop()
    first = group[0].metrics

    def mean_of(section: str, key: str) -> float:
        return statistics.fmean(float((r.metrics.get(section) or {}).get(key) or 0.0) for r in group)

    collapsed = any(float((r.metrics.get("eval") or {}).get("top_class_share", 0.0)) >= COLLAPSED_SHARE for r in group)
    f1 = [float(r.scores[F1]) for r in group] if m != F1 and all(F1 in r.scores for r in group) else []
    return Row(
        task,
        method,
        group[0].recipe["method"]["name"],
        m,
        [r.seed for r in group],
        [float(r.scores[m]) for r in group],
        int(first["params"]["trainable"]),
        int(first["params"]["total"]),
        float(first["params"]["percent"]),
        mean_of("memory", "peak_bytes"),
        mean_of("train", "seconds"),
        mean_of("train", "samples_per_second"),
        first.get("lr"),
        [str(r.path) for r in group],
        collapsed=collapsed,
        f1=f1,
        searched=dict(group[0].searched),
    )


def clue_average(rows: list[Row]) -> dict[str, Any]:
    """Mean over tasks of each method's mean metric, over the tasks where every method has results. A method
    with a collapsed cell (†) among them is never the best average."""
    methods = list(dict.fromkeys(r.method for r in rows))
    tasks = list(dict.fromkeys(r.task for r in rows))
    have = {(r.task, r.method): r.mean for r in rows}
    complete = [t for t in tasks if all((t, m) in have for m in methods)]
    by_method = {m: statistics.fmean(have[(t, m)] for t in complete) for m in methods} if complete else {}
    collapsed = [m for m in by_method if any(r.collapsed for r in rows if r.method == m and r.task in complete)]
    live = {m: v for m, v in by_method.items() if m not in collapsed}
    pick = max if all(higher_is_better(r.metric) for r in rows) else min
    top = pick(live.values()) if live else None
    best = [m for m, v in live.items() if top is not None and abs(v - top) < 1e-12]
    if top is None or all(abs(v - top) < 1e-12 for v in by_method.values()):
        best = []  # one method, every method ties, or only collapsed ones: as in the task columns, nothing is "best"
    return {
        "tasks": complete,
        "excluded_tasks": [t for t in tasks if t not in complete],
        "by_method": by_method,
        "best": best,
        "collapsed": collapsed,
    }


def is_fraction(rows: list[Row]) -> bool:
    """Metrics in [0, 1] (accuracy, F1) are shown ×100, as CLUE does; losses never are."""
    return all(higher_is_better(r.metric) and 0.0 <= v <= 1.0 for r in rows for v in r.values)


def fmt_metric(mean: float, std: float | None, pct: bool) -> str:
    k, digits = (100.0, 2) if pct else (1.0, 4)
    return f"{mean * k:.{digits}f} ± {std * k:.{digits}f}" if std is not None else f"{mean * k:.{digits}f}"


def _opt(x: float | None) -> str:
    return "" if x is None else repr(x)


# the CSV's columns: raw metric values (not ×100), one row per (task, method)
CSV_COLUMNS: dict[str, Any] = {
    "task": lambda r: r.task,
    "method": lambda r: r.method,
    "method_name": lambda r: r.method_name,
    "metric": lambda r: r.metric,
    "n_seeds": lambda r: len(r.values),
    "mean": lambda r: repr(r.mean),
    "std": lambda r: _opt(r.std),
    "ci95_low": lambda r: _opt(r.ci[0] if r.ci else None),
    "ci95_high": lambda r: _opt(r.ci[1] if r.ci else None),
    "values": lambda r: ";".join(map(repr, r.values)),
    "seeds": lambda r: ";".join(map(str, r.seeds)),
    "best": lambda r: int(r.best),
    "collapsed": lambda r: int(r.collapsed),
    "f1_macro_mean": lambda r: _opt(r.f1_mean),
    "f1_macro_std": lambda r: _opt(r.f1_std),
    "trainable_params": lambda r: r.trainable,
    "total_params": lambda r: r.total,
    "trainable_percent": lambda r: r.trainable_percent,
    "peak_memory_bytes": lambda r: int(r.peak_memory_bytes),
    "train_seconds": lambda r: r.train_seconds,
    "samples_per_second": lambda r: r.samples_per_second,
    "lr": lambda r: r.lr,
    "searched": lambda r: ";".join(f"{k}={v}" for k, v in r.searched.items()),
}


def csv_text(rows: list[Row]) -> str:
    """The long table as CSV (raw metric values, not ×100)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(CSV_COLUMNS))
    for r in rows:
        w.writerow([get(r) for get in CSV_COLUMNS.values()])
    return buf.getvalue()


def report_json(
    rows: list[Row], avg: dict[str, Any], title: str, settings: dict[str, Any], searches: list[Any] = ()
) -> dict[str, Any]:
    out_rows = []
    for r in rows:
        d = {k: v for k, v in vars(r).items()}
        d.update(mean=r.mean, std=r.std, n_seeds=len(r.values), ci95=r.ci, f1_macro_mean=r.f1_mean)
        out_rows.append(d)
    return {
        "title": title,
        "std": "sample standard deviation (n-1) over seeds; null for one seed",
        "ci95": INTERVAL,
        "rows": out_rows,
        "average": avg,
        "settings": settings,
        "best": {t: [r.method for r in rows if r.task == t and r.best] for t in dict.fromkeys(r.task for r in rows)},
        "not_separated_from_best": not_separated(rows),
        "searches": [{**dataclasses.asdict(s), "path": str(s.path)} for s in searches],
    }
