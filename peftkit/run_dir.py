"""Everything a run writes: atomic files, the resolved recipe, metrics.json, predictions, the log."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
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


LOCK = ".peftkit-run.lock"
PARENT_ENV = "PEFTKIT_PARENT_PID"  # set by `peftkit compare` for the cells it runs as subprocesses


def _lock_alive(held: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock still runs (a lock from another machine counts as alive)."""
    import socket

    if held.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(held["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


@contextlib.contextmanager
def run_lock(path: Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``path/.peftkit-run.lock`` while a run writes ``path``: a second run into the same folder (a compare
    rerun while an orphaned cell still trains, two terminals) stops with an error instead of both writing it.
    A lock left by a process that is gone is taken over."""
    if not enabled:
        yield
        return
    import socket

    from peftkit.errors import PeftkitError

    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK
    try:
        held = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        held = None
    if isinstance(held, dict) and _lock_alive(held):
        raise PeftkitError(
            f"{path} is being written by another peftkit run (pid {held.get('pid')} on {held.get('host')}, "
            f"since {held.get('started')}); wait for it or stop it, or, if that run is gone, delete {lock}"
        )
    lock.unlink(missing_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise PeftkitError(
            f"{path} is being written by another peftkit run that started just now; wait for it"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(me, f)
    try:
        yield
    finally:
        try:
            if json.loads(lock.read_text(encoding="utf-8")) == me:
                lock.unlink()
        except (OSError, ValueError):
            pass


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
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda record: not getattr(record, "file_only", False))  # e.g. the error the CLI prints itself
    handlers: list[logging.Handler] = [console]
    if output_dir is not None and main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "train.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h._peftkit = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.propagate = False
    return log
