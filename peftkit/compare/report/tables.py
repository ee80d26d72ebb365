"""Reports from finished run dirs: per task and method, the metric's mean ± std over seeds, cost, plots.

The report reads only run dirs (``recipe.yaml`` + ``metrics.json``, and ``cell.json`` for the labels a
compare file gave), so ``peftkit report DIR...`` and ``peftkit compare`` share this one code path.
Outputs in the report folder: ``report.md``, ``report.csv``, ``report.json``, ``report.html`` (plots
embedded, a single file to mail around) and ``plots/*.png``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peftkit import run_dir as outputs
from peftkit.errors import PeftkitError
from peftkit.evaluation.metrics import COLLAPSED_SHARE
from peftkit.recipe import flatten

log = logging.getLogger("peftkit")
SKIP_DIRS = ("_stale", "report")  # moved-aside runs and report folders are not runs of the grid
# the split a report compares → the metrics.json section holding it: the dev metrics of the saved (best) model, or
# that model's metrics on a labelled test split (eval.predict on FewCLUE test_public, or an own test file with labels)
SPLITS = {"dev": "final", "test": "test"}


@dataclass
class RunRecord:
    """One finished run dir."""

    path: Path
    task: str
    method: str
    seed: int
    recipe: dict[str, Any]
    metrics: dict[str, Any]
    section: str = "final"  # the metrics.json section compared: "final" (dev) or "test"
    seed_keys: frozenset[str] = frozenset()  # settings that go with the seed in its compare grid (per_seed)

    @property
    def scores(self) -> dict[str, Any]:
        """The run's metrics on the split the report compares."""
        return self.metrics.get(self.section) or {}


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

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n − 1); None for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


# ------------------------------------------------------------------------------------------ loading


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run dirs named directly, or found below the given folders (skipping ``_stale`` and ``report``)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            found.append(p)
        elif p.is_dir():
            for m in sorted(p.rglob("metrics.json")):
                rel = m.parent.relative_to(p).parts
                if not any(part in SKIP_DIRS or part.startswith(".") for part in rel):
                    found.append(m.parent)
        else:
            raise PeftkitError(f"{p}: not a run dir (no metrics.json) nor a folder; give output_dirs of peftkit runs")
    return list(dict.fromkeys(found))


def _read_run(path: Path, section: str = "final") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        recipe = yaml.safe_load((path / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        log.warning("%s: skipped, unreadable run files (%s)", path, exc)
        return None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("final"), dict) or not isinstance(recipe, dict):
        log.warning("%s: skipped, no final metrics (an unfinished run?)", path)
        return None
    if not isinstance(metrics.get(section), dict):
        log.warning(
            "%s: skipped, no test metrics (they come from eval.predict: true on a test split with labels)", path
        )
        return None
    try:
        cell = json.loads((path / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cell = {}
    return recipe, metrics, cell if isinstance(cell, dict) else {}


def load_runs(paths: list[str | Path], split: str = "dev") -> list[RunRecord]:
    """Every finished run under ``paths``, labelled by its compare cell (or by method/task name); with
    ``split="test"`` only the runs that scored a labelled test split, compared on it."""
    if split not in SPLITS:
        raise PeftkitError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    section = SPLITS[split]
    runs = []
    for d in find_run_dirs(paths):
        got = _read_run(d, section)
        if got is None:
            continue
        recipe, metrics, cell = got
        task = cell.get("task") or str(recipe["task"]["name"]).rsplit("/", 1)[-1]
        seed = int(cell.get("seed", recipe.get("train", {}).get("seed", 0)))
        runs.append(
            RunRecord(
                d,
                task,
                cell.get("method") or recipe["method"]["name"],
                seed,
                recipe,
                metrics,
                section,
                frozenset(cell.get("seed_keys") or ()),
            )
        )
    _label_methods(runs)
    if not runs:
        what = "final" if split == "dev" else "test (eval.predict: true on a test split with labels)"
        raise PeftkitError(f"no finished runs (metrics.json with {what} metrics) under {', '.join(map(str, paths))}")
    _check_duplicates(runs)
    return runs


# settings that do not change what a run measures: where it lives, logging, checkpoint bookkeeping,
# speed switches whose numbers agree, and plugin-loading options (the seed is a run's own axis)
NOT_COMPARED = frozenset(
    {
        "output_dir",
        "plugins",
        "train.seed",
        "train.log_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.compile",
        "train.gradient_checkpointing",
        "eval.batch_size",
        "eval.predict",
        "eval.merged",
        "data.truncation_warning",
        "model.trust_remote_code",
        "model.allow_pickle",
    }
)
# task params that say where the data is, not which data
LOCATION_PARAMS = frozenset({"data_dir", "cache_dir"})


def compared_settings(flat: dict[str, Any]) -> dict[str, str]:
    """A flattened recipe (dotted keys: ``train.lr``, ``method.params.r``) as canonical JSON values, without
    the settings that do not change what a run measures."""
    return {
        k: json.dumps(v, sort_keys=True, ensure_ascii=False)
        for k, v in flat.items()
        if k not in NOT_COMPARED and not (k.startswith("task.params.") and k.rsplit(".", 1)[-1] in LOCATION_PARAMS)
    }


def _short(key: str) -> str:
    return key.removeprefix("method.params.")


def _show(value: Any) -> str:
    """A value as a recipe writes it: ``null``, ``true``, ``[query,value]``."""
    if isinstance(value, list):
        return "[" + ",".join(map(_show, value)) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _label_methods(runs: list[RunRecord]) -> None:
    """Label every run by its compare cell's label, or else its method's name; where runs under one label differ
    in a setting, add the settings that differ: ``lora(r=4)``, ``lora(train.lr=0.001)``. Method params split a
    label everywhere (a method is its params); other settings only among runs of the same task, since each
    task's recipe may set its own (``data.max_length``) and the table's columns should line up. So only runs
    that differ in nothing but the seed share a label, whether they come from one compare grid or several; a
    grid's ``per_seed`` settings (FewCLUE's train_0..4 for seeds 0..4) count as part of the seed."""
    by_base: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_base.setdefault(r.method, []).append(r)
    for base, group in by_base.items():
        flat = {id(r): flatten(r.recipe) for r in group}
        settings = {
            id(r): {k: v for k, v in compared_settings(flat[id(r)]).items() if k not in r.seed_keys} for r in group
        }

        def differing(members: list[RunRecord], only_method: bool = False) -> set[str]:
            mine = [settings[id(r)] for r in members]  # noqa: B023 (called within this iteration)
            shared = set.intersection(*(set(x) for x in mine))  # a key a newer peftkit added is not a difference
            return {k for k in shared if len({x[k] for x in mine}) > 1 and (not only_method or k.startswith("method."))}

        keys = differing(group, only_method=True)
        for task in dict.fromkeys(r.task for r in group):
            keys |= differing([r for r in group if r.task == task])
        order = sorted(keys, key=lambda k: (not k.startswith("method.params."), k))
        for r in group:
            shown = [f"{_short(k)}={_show(flat[id(r)][k])}" for k in order if k in flat[id(r)]]
            r.method = f"{base}({','.join(shown)})" if shown else base


def _check_duplicates(runs: list[RunRecord]) -> None:
    seen: dict[tuple, Path] = {}
    for r in runs:
        key = (r.task, r.method, r.seed)
        if key in seen:
            raise PeftkitError(
                f"{seen[key]} and {r.path} are both task {r.task!r}, method {r.method!r}, seed {r.seed}, with the same "
                "settings (a rerun, or a copy?): one would count twice in the mean. Leave one of them out of the report"
            )
        seen[key] = r.path


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


def csv_text(rows: list[Row]) -> str:
    """The long table as CSV (raw metric values, not ×100)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "task",
            "method",
            "method_name",
            "metric",
            "n_seeds",
            "mean",
            "std",
            "values",
            "seeds",
            "best",
            "trainable_params",
            "total_params",
            "trainable_percent",
            "peak_memory_bytes",
            "train_seconds",
            "samples_per_second",
            "lr",
        ]
    )
    for r in rows:
        w.writerow(
            [
                r.task,
                r.method,
                r.method_name,
                r.metric,
                len(r.values),
                repr(r.mean),
                "" if r.std is None else repr(r.std),
                ";".join(map(repr, r.values)),
                ";".join(map(str, r.seeds)),
                int(r.best),
                r.trainable,
                r.total,
                r.trainable_percent,
                int(r.peak_memory_bytes),
                r.train_seconds,
                r.samples_per_second,
                r.lr,
            ]
        )
    return buf.getvalue()


def report_json(rows: list[Row], avg: dict[str, Any], title: str, settings: dict[str, Any]) -> dict[str, Any]:
    out_rows = []
    for r in rows:
        d = {k: v for k, v in vars(r).items()}
        d.update(mean=r.mean, std=r.std, n_seeds=len(r.values))
        out_rows.append(d)
    return {
        "title": title,
        "std": "sample standard deviation (n-1) over seeds; null for one seed",
        "rows": out_rows,
        "average": avg,
        "settings": settings,
        "best": {t: [r.method for r in rows if r.task == t and r.best] for t in dict.fromkeys(r.task for r in rows)},
    }


def write_report(
    paths: list[str | Path],
    out_dir: str | Path,
    *,
    title: str = "peftkit comparison",
    metric: str | None = None,
    split: str = "dev",
    searches: list[Path] | None = None,
) -> Path:
    """Build the report of the runs under ``paths`` into ``out_dir``; returns ``out_dir``. ``split`` is what the
    tables compare: ``dev`` (each run's saved best checkpoint on dev) or ``test`` (that checkpoint on a labelled
    test split, for runs that scored one)."""
    from peftkit.compare.report import plots as report_plots
    from peftkit.compare.report.pages import html_page, markdown, settings_of

    runs = load_runs(paths, split)
    rows = summarize(runs, metric)
    avg = clue_average(rows)
    settings = {**settings_of(runs), "split": split}
    out = Path(out_dir)
    plots = report_plots.draw_all(runs, rows, avg, out / "plots", split)
    outputs.atomic_write(out / "report.md", markdown(rows, avg, title, settings, plots, out))
    outputs.atomic_write(out / "report.csv", csv_text(rows))
    outputs.write_json(out / "report.json", report_json(rows, avg, title, settings))
    outputs.atomic_write(out / "report.html", html_page(rows, avg, title, settings, plots))
    log.info(
        "report of %d runs (%d tasks × %d methods) written to %s",
        len(runs),
        len({r.task for r in rows}),
        len({r.method for r in rows}),
        out,
    )
    return out
