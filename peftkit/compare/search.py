"""Searching recipe keys (the learning rate first) per task and method, before the grid's seeds run.

A compare file's ``search:`` gives each key a list of values or a range. Per (task, method) a study runs
its trials on one seed — each trial an ordinary run in ``<output_dir>/_search/<task>/<method>/trial<N>``,
scored on the selection split carved from train (``on: selection``, the default) or on dev — and the best
value by the selection metric (``eval.metric`` or the task's) goes to every seed's cell.

Lists only: a plain grid, every combination in order. A range: Optuna's TPE sampler, lists then being
categorical choices. The study is rebuilt from the finished trial folders each time (Optuna's in-memory
storage, ``add_trial``), and the sampler for trial N is seeded with (search seed, N), so trial N's proposal
is a function of the trials before it: a rerun proposes the same values, finds those trials finished
(their cells' hashes match) and goes on where it stopped, like every grid. Optuna is imported only here,
and only when a range is searched.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from peftkit import run_dir as outputs
from peftkit.compare.cells import cell_status, plan_line, read_json
from peftkit.compare.grid import Cell, Grid, build_cell, cell_data
from peftkit.compare.spec import MethodEntry, Range, SearchSpec, TaskEntry, at_edge

log = logging.getLogger("peftkit")
SEARCH_DIR = "_search"


@dataclass
class Trial:
    """One trial of a study: the values it tried, its cell, and its score once finished."""

    number: int
    params: dict[str, Any]
    cell: Cell
    value: float | None = None  # the selection metric on the trial's scored split; None = not (yet) finished


@dataclass
class Study:
    """The search of one (task, method)."""

    task: TaskEntry
    method: MethodEntry
    spec: SearchSpec
    seed: int
    folder: Path
    metric: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.task.key, self.method.key

    @property
    def name(self) -> str:
        return f"{self.task.key}/{self.method.key}"

    @property
    def maximize(self) -> bool:
        return not self.metric.endswith("loss")

    @property
    def best(self) -> Trial | None:
        """The finished trial with the best score (the earliest among equals), or None."""
        done = [t for t in self.trials if t.value is not None]
        if not done:
            return None
        sign = -1.0 if self.maximize else 1.0
        return min(done, key=lambda t: (sign * t.value, t.number))

    @property
    def finished(self) -> bool:
        return len(self.trials) == self.spec.trials and all(t.value is not None for t in self.trials)


def studies(grid: Grid, registry: Any, only: list[str] | None = None) -> list[Study]:
    """A study per (task, method) that searches and has a cell left in the grid (and in ``only``, if given)."""
    from peftkit.recipe import selection_metric

    out = []
    for task in grid.spec.tasks:
        for method in grid.spec.methods:
            spec = grid.spec.search_for(method)
            if spec is None:
                continue
            seeds = [f"{task.key}/{method.key}/seed{x}" for x in grid.spec.seeds]
            kept = [n for n in seeds if not any(fnmatch(n, p) for p in grid.spec.exclude)]
            names = seeds + [f"{task.key}/{method.key}/trial{i}" for i in range(spec.trials)]
            if not kept or (only and not any(fnmatch(n, p) for n in names for p in only)):
                continue  # no seed left to use its result, or --only leaves the pair alone
            seed = spec.seed if spec.seed is not None else grid.spec.seeds[0]
            folder = grid.output_dir / SEARCH_DIR / task.key / method.key
            study = Study(task, method, spec, seed, folder, metric="")
            probe = trial_cell(grid, registry, study, 0, spec.placeholder())  # validates a trial before any runs
            study.metric = selection_metric(probe.recipe, registry.tasks[probe.recipe.task.name])
            out.append(study)
    return out


def trial_cell(grid: Grid, registry: Any, study: Study, number: int, params: dict[str, Any]) -> Cell:
    """The cell of trial ``number``: the study's seed, ``params`` set, scored on the split ``on`` names."""
    data, origin = cell_data(grid, study.task, study.method, study.seed, params)
    if study.spec.split == "selection":
        data.setdefault("eval", {})["split"] = "selection"
        data.setdefault("data", {})["selection_fraction"] = study.spec.selection_fraction
    data["output_dir"] = str(study.folder / f"trial{number}")
    name = f"{study.name}/trial{number}"
    seed_keys = tuple(sorted(study.task.per_seed))
    info = dict(task=study.task.key, method=study.method.key, seed=study.seed, seed_keys=seed_keys)
    return build_cell(grid, registry, data, origin, name, **info, searched=dict(params), role="trial")


def propose(study: Study, number: int) -> dict[str, Any]:
    """The values trial ``number`` tries, from the trials before it (a function of them: see the module doc)."""
    space = study.spec.space
    if not any(isinstance(v, Range) for v in space.values()):
        combos = list(itertools.product(*space.values()))
        return dict(zip(space, combos[number]))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is what compare.log wants
    dists = {k: _distribution(v) for k, v in space.items()}
    sampler = optuna.samplers.TPESampler(
        seed=study.seed * 100_003 + number, n_startup_trials=max(2, min(10, study.spec.trials // 3))
    )
    opt = optuna.create_study(direction="maximize" if study.maximize else "minimize", sampler=sampler)
    for t in study.trials[:number]:
        if t.value is not None:  # a failed trial tells the sampler nothing it can use
            opt.add_trial(
                optuna.trial.create_trial(params=_encode(t.params, space), distributions=dists, value=t.value)
            )
    return _decode(opt.ask(dists).params, space)


def _distribution(spec: Range | list[Any]) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(spec, list):
        return CategoricalDistribution(list(range(len(spec))))  # by position: a value may be a list or a mapping
    if spec.integer:
        return IntDistribution(int(spec.low), int(spec.high), log=spec.log)
    return FloatDistribution(float(spec.low), float(spec.high), log=spec.log)


def _encode(params: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    return {k: space[k].index(v) if isinstance(space[k], list) else v for k, v in params.items()}


def _decode(params: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    return {k: space[k][params[k]] if isinstance(space[k], list) else params[k] for k in space}


def score(trial: Trial, metric: str) -> float | None:
    """The trial's selection metric from its metrics.json, once its cell is finished."""
    if cell_status(trial.cell) != "done":
        return None
    final = (read_json(trial.cell.output_dir / "metrics.json") or {}).get("final") or {}
    value = final.get(metric)
    return float(value) if isinstance(value, (int, float)) and value == value else None  # NaN is no score


RunTrial = Callable[[Cell, str], str]  # (cell, its status) → "done" | "failed: ..."


def run_study(
    grid: Grid, registry: Any, study: Study, run: RunTrial | None, echo: Callable[[str], None] = print
) -> Study:
    """Propose, run (skipping finished ones) and score every trial of a study; ``run=None`` = a dry run, which
    lists the trials it can know without training (all of a plain grid; for a range, up to the first unfinished)."""
    ranged = any(isinstance(v, Range) for v in study.spec.space.values())
    for number in range(study.spec.trials):
        params = propose(study, number)
        trial = Trial(number, params, trial_cell(grid, registry, study, number, params))
        study.trials.append(trial)
        status = cell_status(trial.cell)
        if run is None:
            echo(plan_line(trial.cell, status))
            trial.value = score(trial, study.metric)
            if ranged and trial.value is None:
                left = study.spec.trials - number - 1
                if left:
                    echo(f"{'search':<8} {study.name}: {left} more trial(s), proposed as the results come in")
                break
            continue
        if status != "done":
            run(trial.cell, status)
        trial.value = score(trial, study.metric)
        log.info("%s: %s -> %s=%s", trial.cell.name, _show(params), study.metric, trial.value)
    write_summary(study)
    if run is not None and study.finished and study.best is not None:
        kept = " (at the end, so the finished trials keep their numbers and are not run again)"
        for key, edge in at_edge(study.spec.space, study.best.params).items():
            log.warning(
                "%s: the best %s is the %s value tried, so the best may lie beyond it: add %s values to its list "
                "in search.space%s and run the compare again",
                study.name,
                _show({key: study.best.params[key]}),
                edge,
                "larger" if edge == "largest" else "smaller",
                kept if len(study.spec.space) == 1 else "",
            )
    return study


def _show(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def write_summary(study: Study) -> None:
    """``search.json`` in the study's folder: every trial, its score, and the chosen values (for the report)."""
    if not study.folder.is_dir():
        return  # a dry run of a search that has not started: nothing to describe
    best = study.best
    outputs.write_json(
        study.folder / "search.json",
        {
            "task": study.task.key,
            "method": study.method.key,
            "space": {k: v.model_dump() if isinstance(v, Range) else v for k, v in study.spec.space.items()},
            "split": study.spec.split,
            "selection_fraction": study.spec.selection_fraction if study.spec.split == "selection" else None,
            "seed": study.seed,
            "metric": study.metric,
            "direction": "maximize" if study.maximize else "minimize",
            "sampler": "TPE (optuna)" if any(isinstance(v, Range) for v in study.spec.space.values()) else "grid",
            "trials": [
                {"number": t.number, "params": t.params, "value": t.value, "path": str(t.cell.output_dir)}
                for t in study.trials
            ],
            "chosen": best.params if best else None,
            "best_trial": best.number if best else None,
            "finished": study.finished,
        },
    )
