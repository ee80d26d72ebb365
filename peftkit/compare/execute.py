"""Running a comparison: which cells are finished, which to (re)do, and running them on the devices there are.

Resumability rules (also in the docs, "Comparing methods"):

* ``done``: ``metrics.json`` has a ``final`` entry AND ``cell.json`` holds the cell's current recipe hash →
  skipped.
* ``new``: no cell folder (or an empty one) → run.
* ``broken``: the folder exists but has no usable ``metrics.json`` (crashed, killed, corrupted) → run again
  in place (``overwrite``); nothing finished is lost, because there was no finished result.
* ``changed``: a finished run whose recipe hash differs (the compare file or a default changed) → the old
  folder is MOVED to ``<output_dir>/_stale/<task>/<method>/seed<N>-<old hash>`` with a warning in the log,
  then the cell runs again. Finished results are never deleted; ``peftkit report`` ignores ``_stale``.

Cells run one after another on a CPU machine. With several CUDA devices (and the subprocess executor)
as many cells run at once as there are devices, each in its own process pinned to one device with
``CUDA_VISIBLE_DEVICES``. Every cell carries its seed in its recipe and shares nothing with the others,
so running them in parallel cannot change any result.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit import run_dir as outputs
from peftkit.compare.grid import Cell, Grid, expand
from peftkit.errors import PeftkitError, TrainingError

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
    """``done``, ``new``, ``broken`` or ``changed`` (see the module docstring)."""
    d = cell.output_dir
    if not d.is_dir() or not any(d.iterdir()):
        return "new"
    metrics = read_json(d / "metrics.json")
    if not metrics or not isinstance(metrics.get("final"), dict) or not metrics["final"]:
        return "broken"
    # metrics.json is written last and atomically by the runner, and the hash before the run starts:
    # both present and matching means this very recipe finished.
    info = read_json(d / "cell.json") or {}
    return "done" if info.get("hash") == cell.hash else "changed"


def plan_line(cell: Cell, status: str) -> str:
    """One line of ``peftkit compare --dry-run``."""
    r = cell.recipe
    lr = r.train.lr if r.train.lr is not None else "default"
    length = f"max_steps={r.train.max_steps}" if r.train.max_steps else f"epochs={r.train.epochs:g}"
    return (
        f"{status:<8} {cell.name:<36} method={r.method.name} lr={lr} {length} hash={cell.hash[:12]} "
        f"-> {cell.output_dir}"
    )


def move_aside(cell: Cell, root: Path) -> Path:
    """Move a finished run with another recipe hash out of the grid, to ``root/_stale/...``; returns where."""
    old = (read_json(cell.output_dir / "cell.json") or {}).get("hash") or "nohash"
    dest = root / STALE_DIR / cell.task / cell.method / f"seed{cell.seed}-{old[:12]}"
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"seed{cell.seed}-{old[:12]}-{n}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(cell.output_dir), str(dest))
    return dest


def _write_cell(cell: Cell, **info: Any) -> None:
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
        **info,
    )
    outputs.write_json(path, data)


def run_inprocess(cell: Cell, device: str | None, registry: Any) -> None:
    """Run a cell with :func:`peftkit.train.loop.run` in this process (the device is the process's own)."""
    from peftkit.train import loop as runner

    try:
        runner.run(cell.recipe, registry=registry, overwrite=True)
    finally:
        outputs.setup_logging(None)  # detach the cell's train.log so compare messages stop going there


def run_subprocess(cell: Cell, device: str | None, registry: Any) -> None:
    """Run a cell as ``python -m peftkit run cell.yaml --overwrite``; output goes to the cell's ``cell.log``."""
    recipe_file = cell.output_dir / "cell.yaml"
    outputs.write_recipe(recipe_file, {**cell.resolved, "output_dir": str(cell.output_dir)})
    env = {**os.environ, outputs.PARENT_ENV: str(os.getpid())}  # the cell stops if this compare is killed
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    with open(cell.output_dir / "cell.log", "w", encoding="utf-8") as logf:
        rc = subprocess.call(
            [sys.executable, "-m", "peftkit", "run", str(recipe_file), "--overwrite"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
    if rc != 0:
        tail = (cell.output_dir / "cell.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise TrainingError(f"exit status {rc}; last lines of {cell.output_dir / 'cell.log'}: " + " | ".join(tail))


EXECUTORS: dict[str, Callable[[Cell, str | None, Any], None]] = {
    "inprocess": run_inprocess,
    "subprocess": run_subprocess,
}


def visible_devices() -> list[str]:
    """CUDA device ids this process may use (respecting CUDA_VISIBLE_DEVICES); [] on a CPU machine."""
    import torch

    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in env.split(",") if d.strip()] if env is not None else [str(i) for i in range(n)]
    return ids[:n]


@dataclass
class CompareResult:
    """What a ``peftkit compare`` did, cell by cell."""

    cells: list[Cell]
    status: dict[str, str] = field(default_factory=dict)  # cell name → done | skipped | failed: <why>
    report_dir: Path | None = None

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.status.items() if s.startswith("failed")]


def _run_one(cell: Cell, status: str, root: Path, device: str | None, execute: Callable, registry: Any) -> str:
    if status == "changed":
        dest = move_aside(cell, root)
        log.warning("%s: finished run has a different recipe hash; moved it to %s and running again", cell.name, dest)
    elif status == "broken":
        log.warning("%s: no usable metrics.json (crashed or interrupted run); running again in place", cell.name)
        (cell.output_dir / "metrics.json").unlink(missing_ok=True)  # corrupt, not a result: never mistake it for one
    cell.output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    _write_cell(cell, status="running", device=device or "default", started=t0)
    log.info("%s: running (device %s)", cell.name, device or "default")
    try:
        execute(cell, device, registry)
    except Exception as exc:  # one failed cell must not stop the others; it is reported at the end
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        _write_cell(cell, status="failed", error=why, finished=time.time())
        log.error("%s: failed: %s", cell.name, why)
        return f"failed: {why}"
    if cell_status(cell) != "done":  # e.g. a runner plugin that returned early: never call that finished
        why = "the run ended without writing metrics.json with final metrics"
        _write_cell(cell, status="failed", error=why, finished=time.time())
        log.error("%s: failed: %s", cell.name, why)
        return f"failed: {why}"
    seconds = round(time.time() - t0, 3)
    _write_cell(cell, status="done", finished=time.time(), seconds=seconds)
    final = (read_json(cell.output_dir / "metrics.json") or {}).get("final") or {}
    key = cell.recipe.eval.metric if cell.recipe.eval.metric in final else next(iter(final), None)
    log.info("%s: done in %.0f s%s", cell.name, seconds, f", {key}={final[key]:.4f}" if key else "")
    return "done"


def _schedule(
    todo: list[tuple[Cell, str]], devices: list[str | None], job: Callable[[Cell, str, str | None], str]
) -> dict[str, str]:
    """Run jobs with at most one per device at a time; a job takes a free device and returns it when done."""
    if len(devices) <= 1:
        return {c.name: job(c, s, devices[0] if devices else None) for c, s in todo}
    free: queue.Queue = queue.Queue()
    for d in devices:
        free.put(d)

    def work(item: tuple[Cell, str]) -> tuple[str, str]:
        device = free.get()
        try:
            return item[0].name, job(item[0], item[1], device)
        finally:
            free.put(device)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        return dict(pool.map(work, todo))


def run_compare(
    grid: Grid,
    *,
    registry: Any = None,
    dry_run: bool = False,
    only: list[str] | None = None,
    devices: list[str] | None = None,
    report: bool = True,
    echo: Callable[[str], None] = print,
) -> CompareResult:
    """Expand the grid, print or run every cell that is not finished, then write the report.

    Args:
        grid: from :func:`peftkit.compare.grid.load_compare`.
        registry: plugin registry (default: the installed plugins).
        dry_run: only print one line per cell (its status and settings); run nothing.
        only: fnmatch patterns on cell names (``afqmc/*``, ``*/lora/*``); other cells are left alone.
        devices: CUDA device ids to spread cells over; None = the compare file's ``devices``.
        report: build ``<output_dir>/report`` from every finished cell at the end.
        echo: where plan lines go.
    """
    from fnmatch import fnmatch

    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    every = expand(grid, registry=reg)
    cells = [c for c in every if not only or any(fnmatch(c.name, p) for p in only)]
    if only and not cells:
        raise PeftkitError(f"--only {' '.join(only)}: no cell matches; cell names look like {every[0].name}")
    result = CompareResult(cells)
    states = {c.name: cell_status(c) for c in cells}
    for c in cells:
        echo(plan_line(c, states[c.name]))
    if dry_run:
        return result
    todo = [(c, states[c.name]) for c in cells if states[c.name] != "done"]
    result.status.update({c.name: "skipped" for c in cells if states[c.name] == "done"})
    for c in cells:  # a finished cell's labels follow the file (e.g. per_seed added after it ran); its run is untouched
        if states[c.name] == "done" and (read_json(c.output_dir / "cell.json") or {}).get("seed_keys") != list(
            c.seed_keys
        ):
            _write_cell(c)
    handler = _compare_log(grid.output_dir)
    try:
        log.info(
            "%s: %d cells, %d finished (skipped), %d to run", grid.source, len(cells), len(cells) - len(todo), len(todo)
        )
        execute = EXECUTORS[grid.spec.executor]
        devs = _devices(grid, devices)
        result.status.update(_schedule(todo, devs, lambda c, s, d: _run_one(c, s, grid.output_dir, d, execute, reg)))
        if report:  # every finished cell of the grid, also those --only left alone this time
            result.report_dir = write_grid_report(grid, every)
    finally:
        log.removeHandler(handler)
        handler.close()
    return result


def _compare_log(root: Path) -> logging.Handler:
    """Append what compare decides (skips, moves, failures) to ``<output_dir>/compare.log``."""
    root.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(root / "compare.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _devices(grid: Grid, devices: list[str] | None) -> list[str | None]:
    chosen = (
        devices if devices is not None else (visible_devices() if grid.spec.devices == "auto" else grid.spec.devices)
    )
    if grid.spec.executor == "inprocess" and len(chosen) > 1:
        # One process has one torch state (seeds, default device): in-process cells must run one at a time.
        log.warning(
            "executor inprocess runs cells one at a time; use executor: subprocess to use %d devices", len(chosen)
        )
        return [None]
    return list(chosen)


def write_grid_report(grid: Grid, cells: list[Cell]) -> Path | None:
    """The report of every finished cell of the grid, in ``<output_dir>/report``."""
    from peftkit.compare.report.tables import write_report

    finished = [c.output_dir for c in cells if cell_status(c) == "done"]
    if not finished:
        log.warning("no finished cells yet; no report written")
        return None
    return write_report(
        finished, grid.output_dir / "report", title=grid.title, metric=grid.spec.metric, split=grid.spec.split
    )
