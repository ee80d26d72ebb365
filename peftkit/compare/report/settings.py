"""The settings behind a report's runs: what they share, what varies, per task and method (for reproducing them)."""

from __future__ import annotations

import json
from typing import Any

from peftkit.compare.report.runs import RunRecord

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


def settings_lines(settings: dict[str, Any]) -> list[str]:
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
