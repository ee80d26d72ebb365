"""Finished run dirs as records: found below folders, read, and labelled by their compare cell or settings.

The report reads only run dirs (``recipe.yaml`` + ``metrics.json``, and ``cell.json`` for the labels a
compare file gave), so ``peftkit report DIR...`` and ``peftkit compare`` share this one code path. A
compare grid's search trials (``_search/``) are read separately, by :func:`load_searches`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peftkit.errors import PeftkitError
from peftkit.recipe import flatten

log = logging.getLogger("peftkit")
SKIP_DIRS = ("_stale", "_search", "report")  # moved-aside runs, search trials, report folders: not the grid's cells
# the split a report compares → the metrics.json section holding it: the dev metrics of the saved (best) model, or
# that model's metrics on a labelled test split (eval.predict on FewCLUE test_public, or an own test file with labels)
SPLITS = {"dev": "final", "test": "test"}


@dataclass
class RunRecord:
    """One finished run dir."""

    path: Path
    task: str
    method: str
    seed: int
    recipe: dict[str, Any]
    metrics: dict[str, Any]
    section: str = "final"  # the metrics.json section compared: "final" (dev) or "test"
    seed_keys: frozenset[str] = frozenset()  # settings that go with the seed in its compare grid (per_seed)
    searched: dict[str, Any] = field(default_factory=dict)  # values its grid's search chose (cell.json)

    @property
    def scores(self) -> dict[str, Any]:
        """The run's metrics on the split the report compares."""
        return self.metrics.get(self.section) or {}


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run dirs named directly, or found below the given folders (skipping ``_stale`` and ``report``)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            found.append(p)
        elif p.is_dir():
            for m in sorted(p.rglob("metrics.json")):
                rel = m.parent.relative_to(p).parts
                if not any(part in SKIP_DIRS or part.startswith(".") for part in rel):
                    found.append(m.parent)
        else:
            raise PeftkitError(f"{p}: not a run dir (no metrics.json) nor a folder; give output_dirs of peftkit runs")
    return list(dict.fromkeys(found))


def _read_run(path: Path, section: str = "final") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        recipe = yaml.safe_load((path / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        log.warning("%s: skipped, unreadable run files (%s)", path, exc)
        return None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("final"), dict) or not isinstance(recipe, dict):
        log.warning("%s: skipped, no final metrics (an unfinished run?)", path)
        return None
    if not isinstance(metrics.get(section), dict):
        log.warning(
            "%s: skipped, no test metrics (they come from eval.predict: true on a test split with labels)", path
        )
        return None
    try:
        cell = json.loads((path / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cell = {}
    return recipe, metrics, cell if isinstance(cell, dict) else {}


def load_runs(paths: list[str | Path], split: str = "dev") -> list[RunRecord]:
    """Every finished run under ``paths``, labelled by its compare cell (or by method/task name); with
    ``split="test"`` only the runs that scored a labelled test split, compared on it."""
    if split not in SPLITS:
        raise PeftkitError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    section = SPLITS[split]
    runs = []
    for d in find_run_dirs(paths):
        got = _read_run(d, section)
        if got is None:
            continue
        recipe, metrics, cell = got
        task = cell.get("task") or str(recipe["task"]["name"]).rsplit("/", 1)[-1]
        seed = int(cell.get("seed", recipe.get("train", {}).get("seed", 0)))
        runs.append(
            RunRecord(
                d,
                task,
                cell.get("method") or recipe["method"]["name"],
                seed,
                recipe,
                metrics,
                section,
                frozenset(cell.get("seed_keys") or ()),
                cell.get("searched") or {},
            )
        )
    _label_methods(runs)
    if not runs:
        what = "final" if split == "dev" else "test (eval.predict: true on a test split with labels)"
        raise PeftkitError(f"no finished runs (metrics.json with {what} metrics) under {', '.join(map(str, paths))}")
    _check_duplicates(runs)
    return runs


# settings that do not change what a run measures: where it lives, logging, checkpoint bookkeeping,
# speed switches whose numbers agree, and plugin-loading options (the seed is a run's own axis)
NOT_COMPARED = frozenset(
    {
        "output_dir",
        "plugins",
        "train.seed",
        "train.log_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.compile",
        "train.gradient_checkpointing",
        "eval.batch_size",
        "eval.predict",
        "eval.merged",
        "data.truncation_warning",
        "model.trust_remote_code",
        "model.allow_pickle",
    }
)
# task params that say where the data is, not which data
LOCATION_PARAMS = frozenset({"data_dir", "cache_dir"})


def compared_settings(flat: dict[str, Any]) -> dict[str, str]:
    """A flattened recipe (dotted keys: ``train.lr``, ``method.params.r``) as canonical JSON values, without
    the settings that do not change what a run measures."""
    return {
        k: json.dumps(v, sort_keys=True, ensure_ascii=False)
        for k, v in flat.items()
        if k not in NOT_COMPARED and not (k.startswith("task.params.") and k.rsplit(".", 1)[-1] in LOCATION_PARAMS)
    }


def _short(key: str) -> str:
    return key.removeprefix("method.params.")


def _show(value: Any) -> str:
    """A value as a recipe writes it: ``null``, ``true``, ``[query,value]``."""
    if isinstance(value, list):
        return "[" + ",".join(map(_show, value)) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _label_methods(runs: list[RunRecord]) -> None:
    """Label every run by its compare cell's label, or else its method's name; where runs under one label differ
    in a setting, add the settings that differ: ``lora(r=4)``, ``lora(train.lr=0.001)``. Method params split a
    label everywhere (a method is its params); other settings only among runs of the same task, since each
    task's recipe may set its own (``data.max_length``) and the table's columns should line up. So only runs
    that differ in nothing but the seed share a label, whether they come from one compare grid or several; a
    grid's ``per_seed`` settings (FewCLUE's train_0..4 for seeds 0..4) count as part of the seed."""
    by_base: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_base.setdefault(r.method, []).append(r)
    for base, group in by_base.items():
        flat = {id(r): flatten(r.recipe) for r in group}
        settings = {
            id(r): {k: v for k, v in compared_settings(flat[id(r)]).items() if k not in r.seed_keys} for r in group
        }

        def differing(members: list[RunRecord], only_method: bool = False) -> set[str]:
            mine = [settings[id(r)] for r in members]  # noqa: B023 (called within this iteration)
            shared = set.intersection(*(set(x) for x in mine))  # a key a newer peftkit added is not a difference
            return {k for k in shared if len({x[k] for x in mine}) > 1 and (not only_method or k.startswith("method."))}

        keys = differing(group, only_method=True)
        for task in dict.fromkeys(r.task for r in group):
            keys |= differing([r for r in group if r.task == task])
        order = sorted(keys, key=lambda k: (not k.startswith("method.params."), k))
        for r in group:
            shown = [f"{_short(k)}={_show(flat[id(r)][k])}" for k in order if k in flat[id(r)]]
            r.method = f"{base}({','.join(shown)})" if shown else base


def _check_duplicates(runs: list[RunRecord]) -> None:
    seen: dict[tuple, Path] = {}
    for r in runs:
        key = (r.task, r.method, r.seed)
        if key in seen:
            raise PeftkitError(
                f"{seen[key]} and {r.path} are both task {r.task!r}, method {r.method!r}, seed {r.seed}, with the same "
                "settings (a rerun, or a copy?): one would count twice in the mean. Leave one of them out of the report"
            )
        seen[key] = r.path


@dataclass
class SearchRecord:
    """A (task, method)'s search as its ``search.json`` describes it: every trial's values and score."""

    task: str
    method: str
    space: dict[str, Any]
    split: str
    selection_fraction: float | None
    seed: int
    metric: str
    direction: str
    sampler: str
    trials: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    finished: bool
    path: Path

    @property
    def scored(self) -> list[dict[str, Any]]:
        """The trials that finished with a score."""
        return [t for t in self.trials if t.get("value") is not None]


def search_folders(paths: list[str | Path]) -> list[Path]:
    """The ``_search`` folders of the compare output dirs among ``paths``."""
    return [Path(p) / "_search" for p in paths if (Path(p) / "_search").is_dir()]


def load_searches(folders: list[Path]) -> list[SearchRecord]:
    """Every ``search.json`` below ``folders`` (a compare grid's ``_search``), in task/method order."""
    out = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("search.json")) if Path(folder).is_dir() else []:
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                fields = {k: d[k] for k in SearchRecord.__dataclass_fields__ if k != "path"}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("%s: skipped, unreadable search summary (%s)", path, exc)
                continue
            out.append(SearchRecord(**fields, path=path.parent))
    return out
