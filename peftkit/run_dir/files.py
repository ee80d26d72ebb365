"""The files of a run folder: atomic writes, the resolved recipe, metrics.json, predictions, folder swaps."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypedDict

import yaml

RUN_FILES = ("metrics.json", "recipe.yaml", "model")


class RunResult(TypedDict, total=False):
    """What a finished run returns and writes to ``metrics.json`` (the keys a run always has, and the optional ones)."""

    final: dict[str, float]  # dev metrics of the saved model, re-evaluated from disk
    test: dict[str, float]  # held-out test metrics, when eval.predict scored a labelled test split
    best: dict[str, Any] | None  # the evaluation the saved model comes from (step, epoch, metrics)
    history: list[dict[str, Any]]  # every evaluation during training
    train: dict[str, Any]  # seconds, samples, samples_per_second, steps, epochs, loss curve
    params: dict[str, Any]  # trainable / total parameters
    lr: float
    steps_per_epoch: int
    total_steps: int
    processes: int
    method: str
    task: str
    method_facts: dict[str, Any]
    memory: dict[str, Any]
    warnings: list[str]
    plugins: dict[str, dict[str, Any]]  # which plugin, distribution and version provided the method and task


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _finite(data: Any) -> Any:
    """NaN and infinities as null: strict JSON has no numbers for them (``json.dumps`` writes bare NaN)."""
    if type(data).__module__ == "numpy" and hasattr(data, "item"):
        data = data.item()  # numpy scalars (a task's np.float32 metric) as plain numbers, not strings
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n")


def write_recipe(path: Path, resolved: dict[str, Any]) -> None:
    header = "# Resolved recipe of this run (every default filled in). Rerun: peftkit run <this file>\n"
    atomic_write(path, header + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder into place (the old one is removed only after)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
