"""Everything a run writes: atomic files, the resolved recipe, metrics.json, predictions, the log."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

RUN_FILES = ("metrics.json", "recipe.yaml", "model")


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


def setup_logging(output_dir: Path | None, main: bool = True) -> logging.Logger:
    """Log to stderr and (on the main process) to output_dir/train.log."""
    log = logging.getLogger("peftkit")
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        if getattr(h, "_peftkit", False):
            log.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if output_dir is not None and main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "train.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h._peftkit = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.propagate = False
    return log
