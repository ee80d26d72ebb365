"""The human-readable pages of a report: markdown and a self-contained HTML page (plots inlined as base64)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from peftkit.compare.report.tables import COLLAPSED_SHARE, Row, RunRecord, fmt_metric, is_fraction

MIB = 1024 * 1024
# Settings that usually make or break a comparison; shown once if common to every run, else per value.
SETTING_KEYS = (
    "model.source",
    "model.dtype",
    "model.quantization",
    "data.max_length",
    "train.epochs",
    "train.max_steps",
    "train.batch_size",
    "train.grad_accum",
    "train.scheduler",
    "train.warmup",
    "train.mixed_precision",
    "eval.every",
)

Cell = tuple[str, bool]  # (text, bold)
Table = tuple[list[str], list[list[Cell]]]


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def settings_of(runs: list[RunRecord]) -> dict[str, Any]:
    """Common settings, devices, and per-task / per-method parameters of the runs (for reproducing them)."""
    common = {}
    for key in SETTING_KEYS:
        values = list(dict.fromkeys(json.dumps(_setting(r, key), sort_keys=True) for r in runs))
        common[key] = json.loads(values[0]) if len(values) == 1 else "varies: " + ", ".join(values)
    devices = sorted({str((r.metrics.get("memory") or {}).get("device", "?")) for r in runs})
    tasks: dict[str, list[dict[str, Any]]] = {}
    methods: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        tp = {k: v for k, v in (r.recipe["task"].get("params") or {}).items() if v is not None}
        tasks.setdefault(r.task, []).append(
            {
                "name": r.recipe["task"]["name"],
                "params": tp,
                "train_samples_seen": (r.metrics.get("train") or {}).get("samples"),
                "steps": (r.metrics.get("train") or {}).get("steps"),
                "epochs_trained": _epochs_trained(r.metrics),
            }
        )
        methods.setdefault(r.method, []).append(
            {
                "name": r.recipe["method"]["name"],
                "lr": r.metrics.get("lr"),
                "params": r.recipe["method"].get("params") or {},
            }
        )
    seeds = sorted({r.seed for r in runs})
    tasks = {t: _merged(entries) for t, entries in tasks.items()}
    methods = {m: _merged(entries) for m, entries in methods.items()}
    return {"common": common, "devices": devices, "seeds": seeds, "tasks": tasks, "methods": methods}


def _setting(run: RunRecord, key: str) -> Any:
    """A recipe setting as it acted on the run: ``train.epochs`` is not used where ``train.max_steps`` is set
    (the runner stops at max_steps, before or after that many epochs), so the report must not show it as the
    run's length."""
    value = _get(run.recipe, key)
    if key == "train.epochs" and _get(run.recipe, "train.max_steps"):
        return f"not used (train.max_steps overrides it; the recipe's {_plain(value)} did not bound the run)"
    return value


def _plain(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _epochs_trained(metrics: dict[str, Any]) -> float | None:
    """Passes over the training set the run actually made (1.0 after the first full pass), from metrics.json:
    ``train.epochs``, or steps / steps_per_epoch in runs written before peftkit recorded it; None if unknown."""
    train = metrics.get("train") or {}
    if train.get("epochs") is not None:
        return float(train["epochs"])
    if train.get("steps") is not None and metrics.get("steps_per_epoch"):
        return round(train["steps"] / metrics["steps_per_epoch"], 4)
    return None


def _merged(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One description of several runs: a value they share, or ``varies: a, b`` (nested dicts key by key)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for e in entries for k in e):
        values = [e.get(key) for e in entries]
        if all(isinstance(v, dict) for v in values):
            out[key] = _merged(values)
            continue
        distinct = list(dict.fromkeys(json.dumps(v, sort_keys=True, default=str) for v in values))
        out[key] = values[0] if len(distinct) == 1 else "varies: " + ", ".join(distinct)
    return out


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.3g}" if abs(hi - lo) < 1e-9 else f"{lo:.3g}–{hi:.3g}"


def summary_table(rows: list[Row], avg: dict[str, Any]) -> Table:
    """Methods × tasks (mean ± std), trainable %, and the CLUE-style average; bold = best per column."""
    pct = is_fraction(rows)
    tasks = list(dict.fromkeys(r.task for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    cell = {(r.task, r.method): r for r in rows}
    header = (
        ["method", "trainable %"]
        + [f"{t} ({cell_metric(rows, t)})" for t in tasks]
        + (["average"] if avg["by_method"] else [])
    )
    body = []
    for m in methods:
        mine = [cell[(t, m)] for t in tasks if (t, m) in cell]
        line: list[Cell] = [(m, False), (_pct_range([r.trainable_percent for r in mine]), False)]
        for t in tasks:
            r = cell.get((t, m))
            line.append((_value(r, pct), r.best) if r else ("—", False))
        if avg["by_method"]:
            mark = " †" if m in avg.get("collapsed", ()) else ""
            line.append((fmt_metric(avg["by_method"][m], None, pct) + mark, m in avg["best"]))
        body.append(line)
    return header, body


def _value(r: Row, pct: bool) -> str:
    return fmt_metric(r.mean, r.std, pct) + (" †" if r.collapsed else "")


def cell_metric(rows: list[Row], task: str) -> str:
    return next(r.metric for r in rows if r.task == task)


def detail_table(rows: list[Row]) -> Table:
    """One line per (task, method): the metric, cost and speed."""
    pct = is_fraction(rows)
    header = [
        "task",
        "method",
        "metric",
        "mean ± std",
        "seeds",
        "trainable params",
        "trainable %",
        "peak memory (MiB)",
        "train time (s)",
        "samples/s",
        "lr",
    ]
    body = [
        [
            (r.task, False),
            (r.method, False),
            (r.metric + (" (%)" if pct else ""), False),
            (_value(r, pct), r.best),
            (",".join(map(str, r.seeds)), False),
            (f"{r.trainable:,}", False),
            (f"{r.trainable_percent:.4g}", False),
            (_num(r.peak_memory_bytes / MIB), False),
            (_num(r.train_seconds), False),
            (_num(r.samples_per_second), False),
            (f"{r.lr:.2g}" if r.lr else "—", False),
        ]
        for r in rows
    ]
    return header, body


def _what_is_scored(settings: dict[str, Any]) -> str:
    if settings.get("split") == "test":
        return (
            "the held-out test-set metric of the checkpoint the run's dev evaluations picked (its labelled test "
            "split, scored once after training)"
        )
    return "the dev-set metric of the run's saved best checkpoint"


def _intro(rows: list[Row], avg: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    pct = is_fraction(rows)
    n_runs = sum(len(r.values) for r in rows)
    tasks = list(dict.fromkeys(r.task for r in rows))
    lines = [
        f"{n_runs} runs: {len(tasks)} task(s) × {len({r.method for r in rows})} method(s) × seeds "
        f"{', '.join(map(str, settings['seeds']))}, on {', '.join(settings['devices'])}. Each number is "
        f"{_what_is_scored(settings)}{' ×100' if pct else ''}, mean ± sample standard deviation (n−1) "
        "over seeds; **bold** = best mean on that task (none when every method ties or only one ran)."
    ]
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


def _run_lines(rows: list[Row]) -> list[str]:
    """Where each number comes from: one line per run folder."""
    return [f"- {r.task} / {r.method}, seed {seed}: `{path}`" for r in rows for seed, path in zip(r.seeds, r.runs)]


def _settings_lines(settings: dict[str, Any]) -> list[str]:
    out = [f"- `{k}`: {_plain(v)}" for k, v in settings["common"].items()]
    out.append(
        "- peak memory: peak RSS of the run's process on CPU, peak CUDA allocation on GPU; train time: wall time "
        "of the training loop without its dev evaluations and checkpoint saves (those are train.paused_seconds); "
        "samples/s: training rows a second (a multiple-choice row is one sequence per choice)"
    )
    out += [
        f"- task `{t}`: {d['name']} {json.dumps(d['params'], ensure_ascii=False)} (train samples seen: {d['train_samples_seen']}, "
        f"steps: {d['steps']}, epochs trained: {d.get('epochs_trained')})"
        for t, d in settings["tasks"].items()
    ]
    out += [
        f"- method `{m}`: {d['name']} {json.dumps(d['params'], ensure_ascii=False)}, lr {d['lr']}"
        for m, d in settings["methods"].items()
    ]
    return out


def _numeric(table: Table) -> list[bool]:
    """Which columns hold numbers (right-aligned) rather than names, judged by the first row."""
    header, body = table
    return [bool(body) and body[0][i][0][:1] in "0123456789—-" for i in range(len(header))]


def _md_table(table: Table) -> list[str]:
    header, body = table
    align = ["---:" if num else "---" for num in _numeric(table)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(f"**{t}**" if b else t for t, b in line) + " |" for line in body]
    return lines


PLOT_TITLES = {
    "tradeoff": "Metric vs trainable parameters (log scale)",
    "bars": "Per-task metric (error bars: std over seeds)",
    "curves": "Dev metric during training (mean over seeds; band: ± std)",
}


def markdown(
    rows: list[Row], avg: dict[str, Any], title: str, settings: dict[str, Any], plots: dict[str, Path], out: Path
) -> str:
    parts = [
        f"# {title}",
        "",
        *_intro(rows, avg, settings),
        "",
        "## Summary",
        "",
        *_md_table(summary_table(rows, avg)),
        "",
        "## Details",
        "",
        *_md_table(detail_table(rows)),
        "",
        "## Plots",
        "",
    ]
    for key, path in plots.items():
        parts += [f"### {PLOT_TITLES.get(key, key)}", "", f"![{key}]({path.relative_to(out).as_posix()})", ""]
    parts += ["## Settings", "", *_settings_lines(settings), "", "## Runs", "", *_run_lines(rows), ""]
    return "\n".join(parts)


def _html_table(table: Table) -> str:
    header, body = table
    num = _numeric(table)

    def cls(i: int, best: bool = False) -> str:
        names = (["num"] if num[i] else []) + (["best"] if best else [])
        return f" class='{' '.join(names)}'" if names else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(header))
    rows = "".join(
        "<tr>" + "".join(f"<td{cls(i, b)}>{html.escape(t)}</td>" for i, (t, b) in enumerate(line)) + "</tr>"
        for line in body
    )
    return f"<div class=wrap><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


STYLE = (
    ".wrap{overflow-x:auto}body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;white-space:nowrap}.num{text-align:right}th{background:#f3f3f3}"
    ".best{font-weight:bold;background:#e8f5e9}img{max-width:100%;border:1px solid #eee}code{background:#f6f6f6}"
)


def html_page(
    rows: list[Row], avg: dict[str, Any], title: str, settings: dict[str, Any], plots: dict[str, Path]
) -> str:
    """One self-contained HTML file: tables, plots as base64 PNG data URIs, settings."""

    def md_inline(s: str) -> str:
        s = html.escape(s)
        for a, b in (("**", "b"), ("`", "code")):
            while a in s:
                s = s.replace(a, f"<{b}>", 1).replace(a, f"</{b}>", 1)
        return s

    imgs = "".join(
        f"<h3>{html.escape(PLOT_TITLES.get(k, k))}</h3><img alt='{k}' src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'>"
        for k, p in plots.items()
    )
    settings_html = "".join(f"<li>{md_inline(line[2:])}</li>" for line in _settings_lines(settings))
    runs_html = "".join(f"<li>{md_inline(line[2:])}</li>" for line in _run_lines(rows))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        + "".join(f"<p>{md_inline(p)}</p>" for p in _intro(rows, avg, settings))
        + f"<h2>Summary</h2>{_html_table(summary_table(rows, avg))}<h2>Details</h2>{_html_table(detail_table(rows))}"
        f"<h2>Plots</h2>{imgs}<h2>Settings</h2><ul>{settings_html}</ul><h2>Runs</h2><ul>{runs_html}</ul></body></html>\n"
    )
