"""Compare files: a base recipe × methods × tasks × seeds → one validated recipe per cell.

A compare file (YAML) is expanded into cells; each cell is an ordinary run in
``<output_dir>/<task>/<method label>/seed<N>``. A cell is identified by the sha256 of its resolved
recipe (every default filled in, ``output_dir`` left out), stored in the cell's ``cell.json``, so a
rerun knows which cells are finished and which must be redone. Running the cells lives in
:mod:`peftkit.compare.execute`; turning run dirs into tables and plots in :mod:`peftkit.compare.report.tables`.

Example:
    >>> grid = load_compare("recipes/compare/clue-methods.yaml")      # doctest: +SKIP
    >>> [c.name for c in expand(grid)][:2]                            # doctest: +SKIP
    ['afqmc/lora/seed0', 'afqmc/lora/seed1']
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from peftkit.errors import RecipeError
from peftkit.recipe import (
    Recipe,
    _format,
    apply_overrides,
    flatten,
    line_index,
    method_params,
    parse_yaml,
    pydantic_problems,
    resolved_dict,
    task_params,
    validate,
)
from peftkit.recipe import set_dotted as recipe_set_dotted

LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
# Keys the grid itself decides; an override of them would make a cell's name or folder lie.
RESERVED = {
    "output_dir": "cells get <output_dir>/<task>/<method>/seed<N>",
    "train.seed": "list seeds under `seeds:`",
    "method.name": "add another entry under `methods:`",
    "task.name": "add another entry under `tasks:`",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_overrides(v: dict[str, Any]) -> dict[str, Any]:
    for key in v:
        if key in RESERVED:
            raise ValueError(f"{key!r} cannot be overridden per entry: {RESERVED[key]}")
        if not key or any(not part for part in key.split(".")):
            raise ValueError(f"{key!r} is not a dotted recipe key such as train.lr")
    return v


class MethodEntry(_Strict):
    label: str | None = Field(
        None,
        pattern=LABEL_PATTERN,
        description="Name of this entry in folders and tables (default: the method name). Needed when one method "
        "appears twice with different params, e.g. adapters-houlsby and adapters-pfeiffer.",
    )
    name: str = Field(description="Registered method name (`peftkit plugins` lists them).")
    params: dict[str, Any] = Field(default_factory=dict, description="method.params for this entry.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted recipe keys set for this method only, e.g. `train.lr: 5.0e-5` for full "
        "fine-tuning. Applied after the task's overrides, so they win.",
    )
    _overrides = field_validator("overrides")(_check_overrides)

    @property
    def key(self) -> str:
        return self.label or self.name


class TaskEntry(_Strict):
    label: str | None = Field(
        None,
        pattern=LABEL_PATTERN,
        description="Name of this entry in folders and tables (default: the task name after its last `/`, so clue/afqmc → afqmc).",
    )
    name: str = Field(description="Registered task name, e.g. clue/afqmc.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="task.params for this entry (data_dir, subset sizes, ...)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted recipe keys set for this task only, e.g. `data.max_length: 64`.",
    )
    per_seed: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted recipe keys whose value goes with the seed: the cell of the i-th entry "
        "of `seeds` gets the i-th value, so every list is as long as `seeds`. FewCLUE's protocol — five runs, each "
        "trained on its own split — is `task.params.train_split: [train_0, train_1, train_2, train_3, train_4]` "
        "with five seeds; the report then averages the five runs as it averages seeds. Applied after `overrides`.",
    )
    _overrides = field_validator("overrides")(_check_overrides)
    _per_seed = field_validator("per_seed")(_check_overrides)

    @property
    def key(self) -> str:
        return self.label or self.name.rsplit("/", 1)[-1]


class CompareFile(_Strict):
    """The schema of a compare file."""

    title: str | None = Field(None, description="Title of the report; default: the compare file's name.")
    output_dir: str = Field(description="Folder of the whole comparison: one sub-folder per cell, plus report/.")
    base: dict[str, Any] | str = Field(
        description="The recipe every cell starts from: a mapping, or a recipe file path (looked up next to this file, "
        "then in the working directory). "
        "Its method, task and output_dir are replaced per cell.",
    )
    methods: list[MethodEntry] = Field(
        min_length=1, description="Methods to compare, each with its params and overrides."
    )
    tasks: list[TaskEntry] = Field(min_length=1, description="Tasks to run every method on.")
    seeds: list[int] = Field(min_length=1, description="train.seed values; each (task, method) runs once per seed.")
    exclude: list[str] = Field(
        default_factory=list,
        description="Cells left out of the grid, as patterns on cell names `task/method/seedN` "
        "(`chid/prefix/*`: prefix tuning has no multiple-choice form). Left-out cells are not validated, run or "
        "reported; the average then leaves out tasks where a method has no result. A pattern matching no cell is an error.",
    )
    metric: str | None = Field(
        None, description="Metric the report compares; null = each task's main metric (eval.metric if set)."
    )
    split: Literal["dev", "test"] = Field(
        "dev",
        description="What the report compares: dev = each cell's best checkpoint on dev; test = that checkpoint "
        "on a labelled test split, scored once after training (cells need eval.predict: true and a test split with "
        "labels, e.g. FewCLUE's test_split: test_public). `peftkit report --split` redraws it either way.",
    )
    executor: Literal["subprocess", "inprocess"] = Field(
        "subprocess",
        description="subprocess = one `python -m peftkit run` per cell (isolated memory, true per-cell peak "
        "memory, one CUDA device each); inprocess = call the runner in this process, one cell after another.",
    )
    devices: Literal["auto"] | list[str] = Field(
        "auto",
        description="CUDA devices to spread cells over, one cell per device at a time: `auto` = every visible "
        "device (none on a CPU machine: cells run one after another), or a list of device ids such as ['0', '1'].",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup or any(s < 0 for s in v):
            raise ValueError(f"seeds must be distinct and >= 0, got {v}")
        return v


@dataclass
class Grid:
    """A validated compare file and where it came from."""

    spec: CompareFile
    base: dict[str, Any]
    source: str
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output_dir)

    @property
    def title(self) -> str:
        return self.spec.title or Path(self.source).stem


@dataclass
class Cell:
    """One run of the grid."""

    name: str
    task: str
    method: str
    seed: int
    recipe: Recipe
    resolved: dict[str, Any]
    hash: str
    seed_keys: tuple[str, ...] = ()  # recipe keys whose value goes with the seed (the task entry's per_seed)

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.output_dir)


def load_compare(path: str | Path, overrides: list[str] | None = None) -> Grid:
    """Read and validate a compare file. ``overrides`` (``a.b=c``) apply to every cell and win over the file."""
    p = Path(path)
    if not p.is_file():
        raise RecipeError([f"{path}: no such compare file"], str(path), what="compare file")
    text = p.read_text(encoding="utf-8")
    data = parse_yaml(text, str(path))
    lines = line_index(text)
    try:
        spec = CompareFile.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(
            _format(pydantic_problems(exc, fields=CompareFile), lines, str(path)), str(path), what="compare file"
        ) from None
    problems = _duplicate_labels(spec) + _per_seed_lengths(spec)
    if problems:
        raise RecipeError(_format(problems, lines, str(path)), str(path), what="compare file")
    base = _load_base(spec, p)
    if overrides:
        # Stored as a pseudo-entry applied last: a command-line key beats the file's per-method ones.
        cli = apply_overrides({}, list(overrides))
        reserved = [
            f"{key}: cannot be overridden on the command line: {RESERVED[key]}"
            for key in flatten(cli)
            if key in RESERVED
        ]
        if reserved:
            raise RecipeError(reserved, str(path), what="compare file")
        base["__cli__"] = cli
    return Grid(spec, base, str(path), lines)


def _duplicate_labels(spec: CompareFile) -> list[tuple[tuple, str]]:
    out = []
    for section, entries in (("methods", spec.methods), ("tasks", spec.tasks)):
        seen: dict[str, int] = {}
        for i, e in enumerate(entries):
            if e.key in seen:
                out.append(
                    (
                        (section, i),
                        f"label {e.key!r} is used twice (also {section}.{seen[e.key]}); give each "
                        f"entry a distinct `label:` such as {e.key}-2",
                    )
                )
            seen.setdefault(e.key, i)
    return out


def _per_seed_lengths(spec: CompareFile) -> list[tuple[tuple, str]]:
    return [
        (
            ("tasks", i, "per_seed", key),
            f"{len(values)} values for {len(spec.seeds)} seeds ({spec.seeds}); give one "
            "value per seed, in the order of `seeds`",
        )
        for i, task in enumerate(spec.tasks)
        for key, values in task.per_seed.items()
        if len(values) != len(spec.seeds)
    ]


def _load_base(spec: CompareFile, path: Path) -> dict[str, Any]:
    if isinstance(spec.base, dict):
        return copy.deepcopy(spec.base)
    # Like an include: next to the compare file first; then the working directory, where run paths live.
    tried = [Path(spec.base)] if Path(spec.base).is_absolute() else [path.parent / spec.base, Path(spec.base)]
    ref = next((p for p in tried if p.is_file()), None)
    if ref is None:
        raise RecipeError(
            [f"base: recipe file {spec.base!r} not found (looked for {', '.join(map(str, tried))})"],
            str(path),
            what="compare file",
        )
    return parse_yaml(ref.read_text(encoding="utf-8"), str(ref))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """The recipe's dotted-key setter on a copy of ``value``, raising the problem as a RecipeError."""
    problem = recipe_set_dotted(data, key, copy.deepcopy(value))
    if problem:
        raise RecipeError([f"{key}: {problem}"])


Origin = dict[str, tuple[str, ...]]


def cell_data(grid: Grid, task: TaskEntry, method: MethodEntry, seed: int) -> tuple[dict[str, Any], Origin]:
    """The raw recipe of one cell, and the compare-file key that set each recipe key (for error messages)."""
    ti, mi = str(grid.spec.tasks.index(task)), str(grid.spec.methods.index(method))
    base = {k: v for k, v in grid.base.items() if k != "__cli__"}
    data = copy.deepcopy(base)
    origin: Origin = {k: ("base", *k.split(".")) for k in flatten(base)}
    data["method"] = {"name": method.name, "params": copy.deepcopy(method.params)}
    data["task"] = {"name": task.name, "params": copy.deepcopy(task.params)}
    origin.update(
        {
            "method.name": ("methods", mi, "name"),
            "method.params": ("methods", mi, "params"),
            "task.name": ("tasks", ti, "name"),
            "task.params": ("tasks", ti, "params"),
        }
    )
    # Later layers win: task overrides < the task's per-seed values < method overrides < command line.
    at = grid.spec.seeds.index(seed)
    layers = [
        (("tasks", ti, "overrides"), task.overrides),
        (("tasks", ti, "per_seed"), {key: values[at] for key, values in task.per_seed.items()}),
        (("methods", mi, "overrides"), method.overrides),
        (("command line",), grid.base.get("__cli__", {})),
    ]
    for where, overrides in layers:
        for key, value in flatten(overrides).items():
            set_dotted(data, key, value)
            origin[key] = (*where, key)
    if not isinstance(data.get("train", {}), dict):
        data["train"] = {}  # a non-mapping base.train; the core schema reports it from the base recipe
    data.setdefault("train", {})["seed"] = seed
    data["output_dir"] = str(grid.output_dir / task.key / method.key / f"seed{seed}")
    return data, origin


def recipe_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved recipe without output_dir (where a run lives is not what it is)."""
    body = {k: v for k, v in resolved.items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def chosen_settings(recipe: Recipe, registry: Any) -> dict[str, Any]:
    """The recipe as far as it differs from the defaults (core schema and plugin params): what identifies a
    cell. A later peftkit that adds a key with a default then leaves finished cells finished, where hashing
    every resolved default would re-run a whole grid after an upgrade."""
    chosen = recipe.model_dump(mode="json", exclude_defaults=True)
    chosen["method"]["params"] = method_params(recipe, registry).model_dump(mode="json", exclude_defaults=True)
    chosen["task"]["params"] = task_params(recipe, registry).model_dump(mode="json", exclude_defaults=True)
    return chosen


def expand(grid: Grid, *, registry: Any = None) -> list[Cell]:
    """Every cell (tasks × methods × seeds, in that order), validated. One RecipeError lists every broken cell."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    cells: list[Cell] = []
    problems: dict[str, list[str]] = {}
    names = [f"{t.key}/{m.key}/seed{s}" for t in grid.spec.tasks for m in grid.spec.methods for s in grid.spec.seeds]
    unused = [p for p in grid.spec.exclude if not any(fnmatch(n, p) for n in names)]
    if unused:
        raise RecipeError(
            [f"exclude: {p!r} matches no cell; cell names look like {names[0]}" for p in unused],
            grid.source,
            what="compare file",
        )
    for task in grid.spec.tasks:
        for method in grid.spec.methods:
            mismatch = _head_mismatch(reg, task.name, method.name)
            for seed in grid.spec.seeds:
                name = f"{task.key}/{method.key}/seed{seed}"
                if any(fnmatch(name, p) for p in grid.spec.exclude):
                    continue
                if mismatch:
                    problems.setdefault(
                        f'{mismatch}. Leave the pair out of the grid with `exclude: ["{task.key}/{method.key}/*"]`', []
                    ).append(name)
                    continue
                origin: Origin = {}
                try:
                    data, origin = cell_data(grid, task, method, seed)
                    recipe = validate(data, registry=reg)
                except RecipeError as exc:
                    for p in exc.problems:  # the same problem in many cells is listed once, with the cells
                        problems.setdefault(_locate(p, origin, grid), []).append(name)
                    continue
                resolved = resolved_dict(recipe, reg)
                cells.append(
                    Cell(
                        name,
                        task.key,
                        method.key,
                        seed,
                        recipe,
                        resolved,
                        recipe_hash(chosen_settings(recipe, reg)),
                        tuple(sorted(task.per_seed)),
                    )
                )
    if problems:
        raise RecipeError(
            [f"{p} [{_cells_note(names)}]" for p, names in problems.items()], grid.source, what="compare file"
        )
    return cells


def _head_mismatch(reg: Any, task: str, method: str) -> str | None:
    """:func:`peftkit.plugin.contracts.head_mismatch` for registered names (None when either is unknown: validation says so)."""
    from peftkit.plugin.contracts import head_mismatch

    t, m = reg.tasks.get(task), reg.methods.get(method)
    return head_mismatch(t, m, reg) if t is not None and m is not None else None


def _cells_note(names: list[str]) -> str:
    head = ", ".join(names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"cell {head}" if len(names) == 1 else f"cells {head}{more}"


def _locate(problem: str, origin: Origin, grid: Grid) -> str:
    """Add the compare-file key (and line) that set the recipe key a problem is about (longest matching prefix)."""
    parts = problem.split(":", 1)[0].strip().split(".")
    for n in range(len(parts), 0, -1):
        src = origin.get(".".join(parts[:n]))
        if not src:
            continue
        line = next((grid.lines[src[:k]] for k in range(len(src), 0, -1) if src[:k] in grid.lines), None)
        where = f"{grid.source}:{line}" if line else grid.source
        return f"{problem} (set by {'.'.join(src)}, {where})"
    return problem
