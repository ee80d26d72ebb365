"""A cell's folder: is it finished, its ``cell.json``, moving a stale result aside, running it once.

Resumability rules (also in the docs, "Comparing methods"):

* ``done``: ``metrics.json`` has a ``final`` entry AND ``cell.json`` holds the cell's current recipe hash →
  skipped.
* ``new``: no cell folder (or an empty one) → run.
* ``broken``: the folder exists but has no usable ``metrics.json`` (crashed, killed, corrupted) → run again
  in place (``overwrite``); nothing finished is lost, because there was no finished result.
* ``running``: another live process holds the folder's run lock (a second ``peftkit compare`` of the same
  grid, an orphaned cell) → left alone, and this compare reports the cell as not finished.
* ``changed``: a finished run whose recipe hash differs (the compare file or a default changed) → the old
  folder is MOVED to ``<output_dir>/_stale/<task>/<method>/seed<N>-<old hash>`` with a warning in the log,
  then the cell runs again. Finished results are never deleted; ``peftkit report`` ignores ``_stale``.

A seed's cell whose recipe hash equals a finished search trial's (``search.split: dev`` on the search's seed: the
same recipe, so the same run) is not trained a second time: :func:`reuse_cell` links the trial's files into the
cell's folder and records ``reused_from`` in its ``cell.json``.

Search trials (``<output_dir>/_search/...``) are cells too and follow the same rules.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftkit import run_dir as outputs
from peftkit.compare.grid import Cell

log = logging.getLogger("peftkit")
STALE_DIR = "_stale"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cell_status(cell: Cell) -> str:
    """``done``, ``new``, ``running``, ``broken`` or ``changed`` (see the module docstring)."""
    d = cell.output_dir
    if not d.is_dir() or not any(d.iterdir()):
        return "new"
    if outputs.holder(d):
        return "running"
    metrics = read_json(d / "metrics.json")
    if not metrics or not isinstance(metrics.get("final"), dict) or not metrics["final"]:
        return "broken"
    # metrics.json is written last and atomically by the runner, and the hash before the run starts:
    # both present and matching means this very recipe finished.
    info = read_json(d / "cell.json") or {}
    return "done" if info.get("hash") == cell.hash else "changed"


def plan_line(cell: Cell, status: str) -> str:
    """One line of ``peftkit compare --dry-run``; a value its search has not chosen yet shows as ``<search>``."""
    r = cell.recipe
    lr = r.train.lr if r.train.lr is not None else "default"
    shown = {
        k: "<search>" if cell.pending else f"{v:.4g}" if isinstance(v, float) else v for k, v in cell.searched.items()
    }
    lr = shown.pop("train.lr", lr)
    length = f"max_steps={r.train.max_steps}" if r.train.max_steps else f"epochs={r.train.epochs:g}"
    more = "".join(f" {k}={v}" for k, v in shown.items())
    digest = "<search>" if cell.pending else cell.hash[:12]  # a pending cell's recipe is not known yet
    return (
        f"{status:<8} {cell.name:<36} method={r.method.name} lr={lr}{more} {length} hash={digest} -> {cell.output_dir}"
    )


def move_aside(cell: Cell, root: Path) -> Path:
    """Move a finished run with another recipe hash out of the grid, to ``root/_stale/...``; returns where."""
    old = (read_json(cell.output_dir / "cell.json") or {}).get("hash") or "nohash"
    rel = cell.output_dir.relative_to(root) if cell.output_dir.is_relative_to(root) else Path(cell.output_dir.name)
    dest = root / STALE_DIR / rel.parent / f"{rel.name}-{old[:12]}"  # task/method/seed<N>-<hash>, or a trial's
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{rel.name}-{old[:12]}-{n}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(cell.output_dir), str(dest))
    return dest


def _held(cell: Cell) -> str:
    """The failure of a cell whose folder, cell.json included, belongs to a live run: touch nothing."""
    held = outputs.holder(cell.output_dir)  # None if that run ended since its status was read
    who = outputs.describe(held) if held else "which has just ended"
    why = f"being written by another peftkit run ({who}); run the compare again once it has finished"
    log.error("%s: not run: %s", cell.name, why)
    return f"failed: {why}"


def _failed(cell: Cell, why: str) -> str:
    """Record in ``cell.json`` and the log that the cell failed, and why; returns ``failed: <why>``."""
    write_cell(cell, status="failed", error=why, finished=time.time())
    log.error("%s: failed: %s", cell.name, why)
    return f"failed: {why}"


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (no second copy of a full fine-tune's checkpoints), a copy where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


REUSE_SKIPS = (outputs.LOCK, "cell.json", "cell.yaml", "recipe.yaml")  # the cell writes its own


def reuse_cell(cell: Cell, status: str, root: Path, source: Cell) -> str:
    """Give ``cell`` the finished run of ``source``, a cell with the same recipe hash (its search's trial), instead
    of training it again; returns ``done`` or ``failed: <why>`` like :func:`run_cell`.

    Files are hard-linked (every later write to a run folder replaces a file, so neither folder changes the other),
    ``recipe.yaml`` is the cell's own (its ``output_dir``), and ``cell.json`` records ``reused_from``."""
    if status == "running":
        return _held(cell)
    if source.hash != cell.hash or cell_status(source) != "done":
        raise ValueError(f"{cell.name}: {source.name} is not a finished run of the same recipe")  # a caller's bug
    if cell.output_dir.is_dir() and any(cell.output_dir.iterdir()):  # changed or broken: moved aside, never mixed in
        dest = move_aside(cell, root)
        log.warning("%s: moved the folder that was there to %s", cell.name, dest)
    try:
        shutil.copytree(
            source.output_dir,
            cell.output_dir,
            ignore=shutil.ignore_patterns(*REUSE_SKIPS),
            copy_function=_link_or_copy,
            dirs_exist_ok=True,
        )
        outputs.write_recipe(cell.output_dir / "recipe.yaml", cell.resolved)
    except OSError as exc:
        why = f"could not reuse {source.output_dir}: {exc}"
        return _failed(cell, why)
    write_cell(cell, status="done", finished=time.time(), seconds=0.0, reused_from=str(source.output_dir))
    log.info(
        "%s: the same recipe as %s, which has finished: reused its run instead of training it again",
        cell.name,
        source.name,
    )
    return "done"


def write_cell(cell: Cell, **info: Any) -> None:
    path = cell.output_dir / "cell.json"
    data = read_json(path) or {}
    data.update(
        name=cell.name,
        task=cell.task,
        method=cell.method,
        method_name=cell.recipe.method.name,
        seed=cell.seed,
        seed_keys=list(cell.seed_keys),
        hash=cell.hash,
        role=cell.role,
        searched=cell.searched,
        **info,
    )
    outputs.write_json(path, data)


def run_cell(
    cell: Cell, status: str, root: Path, device: str | None, execute: Callable[[Cell, str | None], None]
) -> str:
    """Run one cell that is not ``done`` with ``execute(cell, device)``, keeping its ``cell.json`` up to date;
    returns ``done`` or ``failed: <why>`` (one failed cell never stops the others)."""
    if status == "running":
        return _held(cell)
    if status == "changed":
        dest = move_aside(cell, root)
        log.warning("%s: finished run has a different recipe hash; moved it to %s and running again", cell.name, dest)
    elif status == "broken":
        log.warning("%s: no usable metrics.json (crashed or interrupted run); running again in place", cell.name)
        (cell.output_dir / "metrics.json").unlink(missing_ok=True)  # corrupt, not a result: never mistake it for one
    cell.output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    write_cell(cell, status="running", device=device or "default", started=t0)
    log.info("%s: running (device %s)", cell.name, device or "default")
    try:
        execute(cell, device)
    except Exception as exc:  # one failed cell must not stop the others; it is reported at the end
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return _failed(cell, why)
    if cell_status(cell) != "done":  # e.g. a runner plugin that returned early: never call that finished
        why = "the run ended without writing metrics.json with final metrics"
        return _failed(cell, why)
    seconds = round(time.time() - t0, 3)
    write_cell(cell, status="done", finished=time.time(), seconds=seconds)
    final = (read_json(cell.output_dir / "metrics.json") or {}).get("final") or {}
    key = cell.recipe.eval.metric if cell.recipe.eval.metric in final else next(iter(final), None)
    log.info("%s: done in %.0f s%s", cell.name, seconds, f", {key}={final[key]:.4f}" if key else "")
    return "done"
