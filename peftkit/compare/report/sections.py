"""What a report says: its tables (summary, details, searches), the opening notes, which differences the seeds
support, and where every number comes from. Rendering them as markdown or HTML is :mod:`.pages`' job."""

from __future__ import annotations

from typing import Any

from peftkit.compare.report.runs import SearchRecord
from peftkit.compare.report.stats import INTERVAL, not_separated
from peftkit.compare.report.tables import COLLAPSED_SHARE, F1_GAP, Row, fmt_metric, is_fraction, shows_f1
from peftkit.compare.spec import at_edge

MIB = 1024 * 1024
Cell = tuple[str, bool]  # (text, bold)
Table = tuple[list[str], list[list[Cell]]]


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.3g}" if abs(hi - lo) < 1e-9 else f"{lo:.3g}–{hi:.3g}"


def _rates(rows: list[Row]) -> str:
    """The learning rate(s) a method ran with over its tasks: one value, or the range they span."""
    lrs = sorted({r.lr for r in rows if r.lr})
    if not lrs:
        return "—"
    mark = " (searched)" if any("train.lr" in r.searched for r in rows) else ""
    return (f"{lrs[0]:.2g}" if len(lrs) == 1 else f"{lrs[0]:.2g}–{lrs[-1]:.2g}") + mark


def summary_table(rows: list[Row], avg: dict[str, Any]) -> Table:
    """Methods × tasks (mean ± std; macro-F1 beside accuracy where they part), trainable %, learning rate, and
    the CLUE-style average; bold = best per column."""
    pct = is_fraction(rows)
    tasks = list(dict.fromkeys(r.task for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    cell = {(r.task, r.method): r for r in rows}
    f1_tasks = {t for t in tasks if shows_f1(rows, t)}
    header = ["method", "trainable %", "lr"]
    for t in tasks:
        header += [f"{t} ({cell_metric(rows, t)})"] + ([f"{t} (macro-F1)"] if t in f1_tasks else [])
    header += ["average"] if avg["by_method"] else []
    body = []
    for m in methods:
        mine = [cell[(t, m)] for t in tasks if (t, m) in cell]
        line: list[Cell] = [(m, False), (_pct_range([r.trainable_percent for r in mine]), False), (_rates(mine), False)]
        for t in tasks:
            r = cell.get((t, m))
            line.append((_value(r, pct), r.best) if r else ("—", False))
            if t in f1_tasks:
                line.append((fmt_metric(r.f1_mean, r.f1_std, pct) if r and r.f1 else "—", False))
        if avg["by_method"]:
            mark = " †" if m in avg.get("collapsed", ()) else ""
            line.append((fmt_metric(avg["by_method"][m], None, pct) + mark, m in avg["best"]))
        body.append(line)
    return header, body


def _value(r: Row, pct: bool) -> str:
    return fmt_metric(r.mean, r.std, pct) + (" †" if r.collapsed else "")


def cell_metric(rows: list[Row], task: str) -> str:
    return next(r.metric for r in rows if r.task == task)


def _ci(r: Row, pct: bool) -> str:
    """The 95% t-interval as shown; a fraction's (accuracy, F1) is clipped to [0, 100], where it can lie."""
    if not r.ci:
        return "— (one seed)"
    k, digits = (100.0, 2) if pct else (1.0, 4)
    lo, hi = (max(0.0, r.ci[0]), min(1.0, r.ci[1])) if pct else r.ci
    return f"{lo * k:.{digits}f} – {hi * k:.{digits}f}"


def detail_table(rows: list[Row]) -> Table:
    """One line per (task, method): the metric with its 95% interval, macro-F1, cost, speed and rate."""
    pct = is_fraction(rows)
    f1 = any(r.f1 for r in rows)
    header = ["task", "method", "metric", "mean ± std", "n", "95% CI"] + (["macro-F1"] if f1 else [])
    header += ["trainable params", "trainable %", "peak memory (MiB)", "train time (s)", "samples/s", "lr"]
    body = []
    for r in rows:
        line = [
            (r.task, False),
            (r.method, False),
            (r.metric + (" (%)" if pct else ""), False),
            (_value(r, pct), r.best),
            (str(len(r.values)), False),
            (_ci(r, pct), False),
        ]
        line += [(fmt_metric(r.f1_mean, r.f1_std, pct) if r.f1 else "—", False)] if f1 else []
        line += [
            (f"{r.trainable:,}", False),
            (f"{r.trainable_percent:.4g}", False),
            (_num(r.peak_memory_bytes / MIB), False),
            (_num(r.train_seconds), False),
            (_num(r.samples_per_second), False),
            ((f"{r.lr:.2g}" if r.lr else "—") + (" (searched)" if "train.lr" in r.searched else ""), False),
        ]
        body.append(line)
    return header, body


def _values(values: list[Any]) -> str:
    return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)


def search_table(searches: list[SearchRecord], pct: bool) -> Table:
    """One line per searched (task, method): what was tried, on which split, and what was chosen."""
    header = ["task", "method", "searched", "trials", "scored on", "metric", "chosen", "its score", "range of scores"]
    body = []
    for s in searches:
        k = 100.0 if pct and not s.metric.endswith("loss") else 1.0
        scores = [t["value"] * k for t in s.scored]
        best = next((t for t in s.trials if t["params"] == s.chosen and t.get("value") is not None), None)
        space = "; ".join(
            f"{key} {_values(v)}"
            if isinstance(v, list)
            else f"{key} {v['low']:g}..{v['high']:g}{' log' if v['log'] else ''}"
            for key, v in s.space.items()
        )
        body.append(
            [
                (s.task, False),
                (s.method, False),
                (space, False),
                (f"{len(s.scored)} of {len(s.trials)} ({s.sampler})", False),
                (_split_name(s), False),
                (s.metric, False),
                (_chosen(s) or "—", True),
                (f"{best['value'] * k:.4g}" if best else "—", False),
                (f"{min(scores):.4g} – {max(scores):.4g}" if scores else "—", False),
            ]
        )
    return header, body


def _chosen(s: SearchRecord) -> str:
    """``train.lr=0.03 (largest tried)``: an edge of the values tried says the best may lie beyond them."""
    edges = at_edge(s.space, s.chosen)
    return ", ".join(
        f"{key}={_values([v])}" + (f" ({edges[key]} tried)" if key in edges else "")
        for key, v in (s.chosen or {}).items()
    )


def _split_name(s: SearchRecord) -> str:
    if s.split == "selection":
        return f"selection ({s.selection_fraction:.0%} of train, seed {s.seed})"
    return f"dev (seed {s.seed})"


def _what_is_scored(settings: dict[str, Any]) -> str:
    if settings.get("split") == "test":
        return (
            "the held-out test-set metric of the checkpoint the run's dev evaluations picked (its labelled test "
            "split, scored once after training)"
        )
    return "the dev-set metric of the run's saved best checkpoint"


def intro(rows: list[Row], avg: dict[str, Any], settings: dict[str, Any], searches: list[SearchRecord]) -> list[str]:
    """The opening paragraphs: what a number is, what the marks mean, how the rates were chosen."""
    pct = is_fraction(rows)
    n_runs = sum(len(r.values) for r in rows)
    tasks = list(dict.fromkeys(r.task for r in rows))
    lines = [
        f"{n_runs} runs: {len(tasks)} task(s) × {len({r.method for r in rows})} method(s) × seeds "
        f"{', '.join(map(str, settings['seeds']))}, on {', '.join(settings['devices'])}. Each number is "
        f"{_what_is_scored(settings)}{' ×100' if pct else ''}, mean ± sample standard deviation (n−1) "
        "over seeds (n in the details, with the 95% Student t-interval of the mean); **bold** = best mean on that "
        "task (none when every method ties or only one ran)."
    ]
    lines += search_note(searches, settings.get("split") == "test")
    if any(shows_f1(rows, t) for t in tasks):
        lines.append(
            f"Macro-F1 stands beside accuracy on tasks where the two are at least {F1_GAP * 100:.0f} points apart in "
            "some method's mean: the classes (or the answers) are imbalanced there, and accuracy alone would "
            "flatter a model that mostly answers the majority class."
        )
    if any(r.collapsed for r in rows):
        lines.append(
            f"† = in at least one of the cell's seeds the model gives one answer (one class, or one choice position "
            f"in a multiple-choice task) for at least {COLLAPSED_SHARE:.0%} of the dev rows: it collapsed to the "
            "prior, so that number measures the data, not the method, and the cell is never marked best (the Runs "
            "section lists every seed's folder)."
        )
    if avg["tasks"]:
        note = f"Average: mean over {', '.join(avg['tasks'])} of each method's mean (unweighted, as the CLUE leaderboard averages)"
        if avg["excluded_tasks"]:
            note += f"; {', '.join(avg['excluded_tasks'])} left out because not every method has results there"
        lines.append(note + ".")
    else:
        lines.append("No task has results for every method, so there is no average.")
    return lines


def search_note(searches: list[SearchRecord], on_test: bool) -> list[str]:
    if not searches:
        return []
    keys = ", ".join(dict.fromkeys(k for s in searches for k in s.space))
    on = sorted({_split_name(s) for s in searches})
    if on_test:  # no trial reads the test split, whichever split scored the trials
        why = (
            "The search ranked its trials by that score, never by the test split, so the test numbers below did "
            "not choose the values: they stay an honest estimate."
        )
    elif all(s.split == "selection" for s in searches):
        why = (
            "The selection rows were held out from the trials' training and are not dev rows, so the dev numbers "
            "below did not choose the values: they stay an honest estimate."
        )
    else:
        why = "Where the search scored dev, the dev numbers below also chose the values and flatter them a little."
    return [
        f"{keys} chosen per task and method by a search (section Searches), each trial scored on "
        f"{' / '.join(on)}; every seed then ran with the chosen value. {why}"
    ]


def significance_lines(rows: list[Row]) -> list[str]:
    """Per task: which methods the seeds cannot tell apart from the best one (overlapping 95% t-intervals)."""
    close = not_separated(rows)
    out = [f"Interval: {INTERVAL}. Overlapping intervals mean the grid does not separate the two methods."]
    for task in dict.fromkeys(r.task for r in rows):
        mine = [r for r in rows if r.task == task]
        best = next((r for r in mine if r.best), None)
        if best is None:
            out.append(f"{task}: no best method (a tie, a single method, or only collapsed runs).")
        elif best.ci is None:
            out.append(f"{task}: {best.method} is best, but with one seed there is no interval to judge it by.")
        elif task in close:
            out.append(
                f"{task}: {best.method} has the best mean, but {', '.join(close[task])} "
                f"{'is' if len(close[task]) == 1 else 'are'} not separated from it (95% t-intervals overlap)."
            )
        else:
            out.append(f"{task}: {best.method} is separated from every other method (no 95% t-interval overlaps).")
    return out


def run_lines(rows: list[Row]) -> list[str]:
    """Where each number comes from: one line per run folder."""
    return [f"- {r.task} / {r.method}, seed {seed}: `{path}`" for r in rows for seed, path in zip(r.seeds, r.runs)]
