"""Compare files: a base recipe × methods × tasks × seeds → one validated recipe per cell.

A compare file (YAML, schema in :mod:`peftkit.compare.spec`) is expanded into cells; each cell is an ordinary
run in ``<output_dir>/<task>/<method label>/seed<N>``. A cell is identified by the sha256 of what its recipe
sets apart from the defaults (``output_dir`` left out), stored in the cell's ``cell.json``, so a rerun knows
which cells are finished and which must be redone. Searching a key before the seeds run lives in
:mod:`peftkit.compare.search`, running the cells in :mod:`peftkit.compare.execute`, and turning run dirs into
tables and plots in :mod:`peftkit.compare.report`.

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
from typing import Any

from pydantic import ValidationError

# CompareFile and RESERVED are also importable from here, where they lived first
from peftkit.compare.spec import RESERVED, CompareFile, MethodEntry, TaskEntry, file_problems, load_base
from peftkit.errors import PeftkitError, RecipeError
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

__all__ = ["CompareFile", "Grid", "Cell", "load_compare", "expand", "cell_data", "settings_hash", "chosen_settings"]


@dataclass
class Grid:
    """A validated compare file and where it came from."""

    spec: CompareFile
    base: dict[str, Any]
    source: str
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    cli_overrides: dict[str, Any] = field(default_factory=dict)  # `a.b=c` given to `peftkit compare`: applied last

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output_dir)

    @property
    def title(self) -> str:
        return self.spec.title or Path(self.source).stem


@dataclass
class Cell:
    """One run of the grid: a seed of a (task, method), or a trial of its search."""

    name: str
    task: str
    method: str
    seed: int
    recipe: Recipe
    resolved: dict[str, Any]
    hash: str
    seed_keys: tuple[str, ...] = ()  # recipe keys whose value goes with the seed (the task entry's per_seed)
    searched: dict[str, Any] = field(default_factory=dict)  # values a search set (a trial's, or the chosen ones)
    role: str = "cell"  # "cell" (a seed the report compares) or "trial" (a search trial)
    pending: bool = False  # its (task, method) search has not finished: `searched` holds placeholders

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
    problems = file_problems(spec)
    if problems:
        raise RecipeError(_format(problems, lines, str(path)), str(path), what="compare file")
    cli = _cli_overrides(spec, list(overrides or []), str(path))
    return Grid(spec, load_base(spec, p), str(path), lines, cli)


def _cli_overrides(spec: CompareFile, overrides: list[str], source: str) -> dict[str, Any]:
    """Command-line keys: none that names a cell, none that a search tries (it would try one value N times)."""
    cli = apply_overrides({}, overrides) if overrides else {}
    searched = {k for m in spec.methods if (s := spec.search_for(m)) for k in s.space}
    problems = [
        f"{key}: cannot be overridden on the command line: {RESERVED[key]}"
        if key in RESERVED
        else f"{key}: cannot be overridden on the command line: the compare file's `search` tries it"
        for key in flatten(cli)
        if key in RESERVED or key in searched
    ]
    if problems:
        raise RecipeError(problems, source, what="compare file")
    return cli


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """The recipe's dotted-key setter on a copy of ``value``, raising the problem as a RecipeError."""
    problem = recipe_set_dotted(data, key, copy.deepcopy(value))
    if problem:
        raise RecipeError([f"{key}: {problem}"])


Origin = dict[str, tuple[str, ...]]


def cell_data(
    grid: Grid, task: TaskEntry, method: MethodEntry, seed: int, searched: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Origin]:
    """The raw recipe of one cell, and the compare-file key that set each recipe key (for error messages).
    ``searched`` holds the values a search tries or chose; they win over the file's overrides."""
    ti, mi = str(grid.spec.tasks.index(task)), str(grid.spec.methods.index(method))
    data = copy.deepcopy(grid.base)
    origin: Origin = {k: ("base", *k.split(".")) for k in flatten(grid.base)}
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
    search_at = ("methods", mi, "search", "space") if method.search is not None else ("search", "space")
    # Later layers win: task overrides < the task's per-seed values < method overrides < search < command line.
    at = grid.spec.seeds.index(seed)
    layers = [
        (("tasks", ti, "overrides"), task.overrides),
        (("tasks", ti, "per_seed"), {key: values[at] for key, values in task.per_seed.items()}),
        (("methods", mi, "overrides"), method.overrides),
        (search_at, searched or {}),
        (("command line",), grid.cli_overrides),
    ]
    for where, overrides in layers:
        # searched keys are dotted already: flattening them would split a list-valued key's value
        items = overrides.items() if where == search_at else flatten(overrides).items()
        for key, value in items:
            set_dotted(data, key, value)
            origin[key] = (*where, key)
    if not isinstance(data.get("train", {}), dict):
        data["train"] = {}  # a non-mapping base.train; the core schema reports it from the base recipe
    data.setdefault("train", {})["seed"] = seed
    data["output_dir"] = str(grid.output_dir / task.key / method.key / f"seed{seed}")
    return data, origin


def settings_hash(settings: dict[str, Any]) -> str:
    """A cell's identity: sha256 of the canonical JSON of its chosen settings (``chosen_settings``) without
    output_dir (where a run lives is not what it is). Not the checkpoint's ``recipe_hash``, which hashes every
    resolved default so that a resume refuses a checkpoint from any other recipe."""
    body = {k: v for k, v in settings.items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def chosen_settings(recipe: Recipe, registry: Any) -> dict[str, Any]:
    """The recipe as far as it differs from the defaults (core schema and plugin params): what identifies a
    cell. A later peftkit that adds a key with a default then leaves finished cells finished, where hashing
    every resolved default would re-run a whole grid after an upgrade."""
    chosen = recipe.model_dump(mode="json", exclude_defaults=True)
    chosen["method"]["params"] = method_params(recipe, registry).model_dump(mode="json", exclude_defaults=True)
    chosen["task"]["params"] = task_params(recipe, registry).model_dump(mode="json", exclude_defaults=True)
    return chosen


def build_cell(grid: Grid, reg: Any, data: dict[str, Any], origin: Origin, name: str, **info: Any) -> Cell:
    """Validate a cell's raw recipe into a Cell; a RecipeError's problems name the compare-file key that set them."""
    try:
        recipe = validate(data, registry=reg)
    except RecipeError as exc:
        raise RecipeError([_locate(p, origin, grid) for p in exc.problems], grid.source, what="compare file") from None
    task, method, seed = info.pop("task"), info.pop("method"), info.pop("seed")
    return Cell(
        name,
        task,
        method,
        seed,
        recipe,
        resolved_dict(recipe, reg),
        settings_hash(chosen_settings(recipe, reg)),
        **info,
    )


def cell_names(grid: Grid) -> list[str]:
    """Every cell name of the grid before ``exclude``, in expansion order."""
    return [f"{t.key}/{m.key}/seed{s}" for t in grid.spec.tasks for m in grid.spec.methods for s in grid.spec.seeds]


def expand(
    grid: Grid, *, registry: Any = None, chosen: dict[tuple[str, str], dict[str, Any]] | None = None
) -> list[Cell]:
    """Every cell (tasks × methods × seeds, in that order), validated. One RecipeError lists every broken cell.

    ``chosen`` maps ``(task label, method label)`` to the values its search picked; a searched pair missing
    from it gets placeholder values and ``pending=True`` (validated, but not yet what will run)."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    names = cell_names(grid)
    unused = [p for p in grid.spec.exclude if not any(fnmatch(n, p) for n in names)]
    if unused:
        raise RecipeError(
            [f"exclude: {p!r} matches no cell; cell names look like {names[0]}" for p in unused],
            grid.source,
            what="compare file",
        )
    cells: list[Cell] = []
    problems: dict[str, list[str]] = {}  # the same problem in many cells is listed once, with the cells
    for task in grid.spec.tasks:
        for method in grid.spec.methods:
            cells += _pair_cells(grid, reg, task, method, (chosen or {}).get((task.key, method.key)), problems)
    if problems:
        raise RecipeError(
            [f"{p} [{_cells_note(names)}]" for p, names in problems.items()], grid.source, what="compare file"
        )
    return cells


def _pair_cells(
    grid: Grid,
    reg: Any,
    task: TaskEntry,
    method: MethodEntry,
    picked: dict[str, Any] | None,
    problems: dict[str, list[str]],
) -> list[Cell]:
    """The cells of one (task, method), one per seed not excluded; problems go into ``problems``."""
    search = grid.spec.search_for(method)
    searched = (picked if picked is not None else search.placeholder()) if search else {}
    out = []
    for seed in grid.spec.seeds:
        name = f"{task.key}/{method.key}/seed{seed}"
        if any(fnmatch(name, p) for p in grid.spec.exclude):
            continue
        info = dict(task=task.key, method=method.key, seed=seed, seed_keys=tuple(sorted(task.per_seed)))
        try:
            data, origin = cell_data(grid, task, method, seed, searched)
            own = data["task"].get("objective") if isinstance(data.get("task"), dict) else None
            mismatch = _head_mismatch(reg, task.name, method.name, own)
            if mismatch:
                hint = f'Leave the pair out of the grid with `exclude: ["{task.key}/{method.key}/*"]`'
                problems.setdefault(f"{mismatch}. {hint}", []).append(name)
                continue
            pending = bool(search) and picked is None
            out.append(build_cell(grid, reg, data, origin, name, **info, searched=searched, pending=pending))
        except RecipeError as exc:
            for p in exc.problems:
                problems.setdefault(p, []).append(name)
    return out


def _head_mismatch(reg: Any, task: str, method: str, override: Any = None) -> str | None:
    """:func:`peftkit.plugin.contracts.head_mismatch` for registered names and the cell's ``task.objective`` (None
    when a name is unknown or the override cannot stand in: validation says so)."""
    from peftkit.plugin.contracts import head_mismatch

    t, m = reg.tasks.get(task), reg.methods.get(method)
    if t is None or m is None:
        return None
    objective = None
    if isinstance(override, str):
        try:
            objective = reg.objective_of(t, override).name
        except PeftkitError:
            return None
    return head_mismatch(t, m, reg, objective)


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
