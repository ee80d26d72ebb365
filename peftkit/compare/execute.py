"""Running a comparison: its searches first, then every seed's cell that is not finished, then the report.

Which cells are finished and which to (re)do is :mod:`peftkit.compare.cells`' job (the resumability rules);
how a cell runs and how jobs share the devices, :mod:`peftkit.compare.executors`'; a (task, method)'s search,
:mod:`peftkit.compare.search`'. Searches run one trial after another (a trial's proposal depends on the ones
before it); several searches, like several cells, run at once when there are several devices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from peftkit.compare.cells import cell_status, plan_line, read_json, reuse_cell, run_cell, write_cell
from peftkit.compare.executors import EXECUTORS, cell_env, schedule, visible_devices
from peftkit.compare.grid import Cell, Grid, expand
from peftkit.compare.search import SEARCH_DIR, Study, run_study, studies
from peftkit.errors import PeftkitError
from peftkit.train.stop import StopRequests

__all__ = ["CompareResult", "run_compare", "cell_status", "write_grid_report"]
log = logging.getLogger("peftkit")


@dataclass
class CompareResult:
    """What a ``peftkit compare`` did, cell by cell (search trials included, as ``task/method/trialN``)."""

    cells: list[Cell]
    status: dict[str, str] = field(default_factory=dict)  # cell name → done | skipped | failed: <why>
    report_dir: Path | None = None
    studies: list[Study] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.status.items() if s.startswith("failed")]


def _selected(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    return [c for c in cells if not only or any(fnmatch(c.name, p) for p in only)]


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
    """Run the grid's searches, then print or run every cell that is not finished, then write the report.

    Args:
        grid: from :func:`peftkit.compare.grid.load_compare`.
        registry: plugin registry (default: the installed plugins).
        dry_run: only print one line per cell and trial (its status and settings); run nothing.
        only: fnmatch patterns on cell names (``afqmc/*``, ``*/lora/*``, ``*/trial*``); other cells are left alone.
        devices: CUDA device ids to spread cells over; None = the compare file's ``devices``.
        report: build ``<output_dir>/report`` from every finished cell at the end.
        echo: where plan lines go.
    """
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    every = expand(grid, registry=reg)  # every cell validated before anything runs (searched keys: placeholders)
    found = studies(grid, reg, only)
    if only and not _selected(every, only) and not found:
        raise PeftkitError(f"--only {' '.join(only)}: no cell matches; cell names look like {every[0].name}")
    if dry_run:
        done = [run_study(grid, reg, s, None, echo) for s in found]
        cells = _selected(expand(grid, registry=reg, chosen=_chosen(done)), only)
        same = _finished_trials(done)
        for c in cells:
            echo(plan_line(c, _shown(c, "pending" if c.pending else cell_status(c), same)))
        return CompareResult(cells, studies=done)
    handler = _compare_log(grid.output_dir)
    try:
        with StopRequests().installed():  # SIGTERM raises here as Ctrl-C does, and the cells' runs stop with it
            return _run(grid, reg, found, only, _devices(grid, devices), report, echo)
    except KeyboardInterrupt as exc:
        log.warning("compare stopped (%s); run it again to go on: finished cells are kept", exc or "Ctrl-C")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def _run(
    grid: Grid,
    reg: Any,
    found: list[Study],
    only: list[str] | None,
    devs: list[str | None],
    report: bool,
    echo: Callable[[str], None],
) -> CompareResult:
    status: dict[str, str] = {}
    execute = EXECUTORS[grid.spec.executor]
    experiment = Path(grid.source).stem  # the grid's name: trackers make it one experiment, a run per cell

    same: dict[str, Cell] = {}  # trials are never reused: only seeds' cells, once the searches have finished

    def job(cell: Cell, state: str, device: str | None) -> str:
        if state == "done":
            status[cell.name] = "skipped"
        elif cell.hash in same:  # its search already ran this very recipe
            status[cell.name] = reuse_cell(cell, state, grid.output_dir, same[cell.hash])
        else:
            status[cell.name] = run_cell(
                cell, state, grid.output_dir, device, lambda c, d: execute(c, d, reg, cell_env(experiment, c))
            )
        return status[cell.name]

    if found:
        log.info("%s: %d search(es) first: %s", grid.source, len(found), ", ".join(s.name for s in found))
    done = schedule(found, devs, lambda s, d: run_study(grid, reg, s, lambda c, st: job(c, st, d), echo))
    same.update(_finished_trials(done))
    every = expand(grid, registry=reg, chosen=_chosen(done))
    cells = _selected(every, only)
    states = {c.name: cell_status(c) for c in cells}
    for c in cells:
        echo(plan_line(c, _shown(c, "pending" if c.pending else states[c.name], same)))
    for c in cells:
        if c.pending:  # its search has no finished trial (every trial failed): nothing to run the seeds with
            status[c.name] = "failed: its search has no finished trial (see compare.log)"
        elif states[c.name] == "done" and _labels_changed(c):
            write_cell(c)  # a finished cell's labels follow the file (e.g. per_seed added after it ran)
    todo = [c for c in cells if not c.pending]
    reused = sum(_shown(c, states[c.name], same) == "reuse" for c in todo)
    log.info(
        "%s: %d cells, %d finished (skipped), %d the same run as a finished search trial (reused), %d to run",
        grid.source,
        len(cells),
        sum(states[c.name] == "done" for c in cells),
        reused,
        sum(states[c.name] != "done" for c in todo) - reused,
    )
    schedule(todo, devs, lambda c, d: job(c, states[c.name], d))
    result = CompareResult(cells, status, studies=done)
    if report:  # every finished cell of the grid, also those --only left alone this time
        result.report_dir = write_grid_report(grid, every)
    return result


def _chosen(done: list[Study]) -> dict[tuple[str, str], dict[str, Any]]:
    """The values each search picked; a search counts once every trial has run (a dry run may stop before)."""
    return {s.key: s.best.params for s in done if s.best is not None and len(s.trials) == s.spec.trials}


def _finished_trials(done: list[Study]) -> dict[str, Cell]:
    """Finished trials by recipe hash: a seed's cell with one of these hashes is that very run (``split: dev``,
    on the search's seed), so it reuses the trial instead of training it again."""
    return {t.cell.hash: t.cell for s in done for t in s.trials if cell_status(t.cell) == "done"}


def _shown(cell: Cell, state: str, same: dict[str, Cell]) -> str:
    """The state a plan line shows: ``reuse`` for a cell that will get a finished trial's run."""
    return "reuse" if state not in ("pending", "done", "running") and cell.hash in same else state


def _labels_changed(cell: Cell) -> bool:
    info = read_json(cell.output_dir / "cell.json") or {}
    return info.get("seed_keys") != list(cell.seed_keys) or info.get("searched", {}) != cell.searched


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
    """The report of every finished cell of the grid (and its searches), in ``<output_dir>/report``."""
    from peftkit.compare.report.write import write_report

    finished = [c.output_dir for c in cells if not c.pending and cell_status(c) == "done"]
    if not finished:
        log.warning("no finished cells yet; no report written")
        return None
    return write_report(
        finished,
        grid.output_dir / "report",
        title=grid.title,
        metric=grid.spec.metric,
        split=grid.spec.split,
        searches=[grid.output_dir / SEARCH_DIR],
    )
