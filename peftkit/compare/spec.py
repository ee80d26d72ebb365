"""The schema of a compare file: methods, tasks, seeds, and the optional learning-rate (or any key) search.

Every model here is strict (an unknown key is an error naming it), and every field's description is what
``docs/comparing-clue.md`` shows as "Every key of a compare file".
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from peftkit.errors import RecipeError
from peftkit.recipe import parse_yaml

LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
# Keys the grid itself decides; an override of them would make a cell's name or folder lie.
RESERVED = {
    "output_dir": "cells get <output_dir>/<task>/<method>/seed<N>",
    "train.seed": "list seeds under `seeds:`",
    "method.name": "add another entry under `methods:`",
    "task.name": "add another entry under `tasks:`",
}
# Keys a search sets on its trials itself (`search.split`, `search.selection_fraction`).
SEARCH_OWNED = {
    "eval.split": "a search scores its trials on the split `search.split` names",
    "data.selection_fraction": "set `search.selection_fraction`",
    "eval.metric": "every trial must be scored by the same metric; set eval.metric in the base or a task's overrides",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_keys(
    v: dict[str, Any], reserved: dict[str, str] = RESERVED, verb: str = "overridden per entry"
) -> dict[str, Any]:
    """Dotted recipe keys that a compare file may set: not empty, not one the grid decides."""
    for key in v:
        if key in reserved:
            raise ValueError(f"{key!r} cannot be {verb}: {reserved[key]}")
        if not key or any(not part for part in key.split(".")):
            raise ValueError(f"{key!r} is not a dotted recipe key such as train.lr")
    return v


class Range(_Strict):
    """A range a search draws values from (Optuna's TPE sampler)."""

    low: int | float = Field(description="Smallest value tried.")
    high: int | float = Field(description="Largest value tried.")
    log: bool = Field(False, description="Draw on a log scale (what learning rates want: 1e-5 .. 1e-2).")
    trials: int = Field(8, ge=1, le=1000, description="Trials for this key (a study runs the largest count given).")

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        return self

    @property
    def integer(self) -> bool:
        """Both bounds written as integers (``r: {low: 4, high: 32}``): draw integers."""
        return isinstance(self.low, int) and isinstance(self.high, int)


class SearchSpec(_Strict):
    """Which recipe keys a search tries, and on what it picks the best value."""

    space: dict[str, list[Any] | Range] = Field(
        description="Recipe keys to search, each a list of values (every one is tried: a plain grid) or a range "
        "`{low, high, log, trials}` (Optuna's TPE sampler, seeded, draws `trials` values). `{}` = no search."
    )
    split: Literal["selection", "dev"] = Field(
        "selection",
        description="What a trial is scored on: `selection` = data.selection_fraction of the training rows, held "
        "out from the trial's training (dev stays an honest estimate of the chosen value); `dev` = the dev split "
        "(cheaper to explain, but the reported dev numbers then also chose the value and flatter it).",
    )
    selection_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the training rows (per label) held out for `split: selection`."
    )
    seed: int | None = Field(None, ge=0, description="The seed the trials run with; null = the first of `seeds`.")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, v: Any) -> Any:
        if isinstance(v, dict) and True in v:  # YAML 1.1 reads a bare `on` key as true
            raise ValueError(
                "`on` reads as true in YAML; say what trials are scored on with `split: selection` or `split: dev`"
            )
        return v

    _space = field_validator("space")(lambda v: check_keys(v, {**RESERVED, **SEARCH_OWNED}, "searched"))

    @field_validator("space")
    @classmethod
    def _values(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, values in v.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{key}: give at least one value, or leave the key out")
        return v

    @property
    def trials(self) -> int:
        """Trials the search runs: every combination of the lists, or the largest ``trials`` of its ranges."""
        ranges = [s.trials for s in self.space.values() if isinstance(s, Range)]
        if ranges:
            return max(ranges)
        n = 1
        for values in self.space.values():
            n *= len(values)
        return n if self.space else 0

    def placeholder(self) -> dict[str, Any]:
        """Values that stand in for the search's result before it has one (to validate the cells early)."""
        return {k: (v.low if isinstance(v, Range) else v[0]) for k, v in self.space.items()}


def at_edge(space: dict[str, Any], chosen: dict[str, Any] | None) -> dict[str, str]:
    """Searched keys whose chosen value is the ``largest`` or ``smallest`` of a list of three or more numbers: the
    best value may lie outside what was tried. (Two values always choose an edge; ranges are left to the sampler.)"""
    out = {}
    for key, values in space.items():
        numbers = isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )
        if not numbers or len(set(values)) < 3 or key not in (chosen or {}):
            continue
        if chosen[key] == max(values):
            out[key] = "largest"
        elif chosen[key] == min(values):
            out[key] = "smallest"
    return out


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
    search: SearchSpec | None = Field(
        None,
        description="This method's search: its `space` replaces the grid's `search.space` (keys are not "
        "merged), and what it leaves unset (`split`, `selection_fraction`, `seed`) comes from the grid's `search`; "
        "`{space: {}}` = no search for this method.",
    )
    _overrides = field_validator("overrides")(check_keys)

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
    _overrides = field_validator("overrides")(check_keys)
    _per_seed = field_validator("per_seed")(check_keys)

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
    search: SearchSpec | None = Field(
        None,
        description="Search recipe keys (train.lr first) per task and method before the seeds run: the trials run "
        "on one seed, the best value by the selection metric is kept, then every seed runs with it. "
        "Trials live in `<output_dir>/_search/<task>/<method>/trial<N>`; a method's own `search` replaces its `space` and whatever else it sets.",
    )
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

    def search_for(self, method: MethodEntry) -> SearchSpec | None:
        """The search a method's cells use, or None when nothing is searched: the grid's, with what the method's
        own search sets laid over it (its ``space`` as a whole). A method that only gives its own rates then
        keeps the grid's ``split: dev``, where taking the defaults would score its trials on a selection split."""
        spec = self.search
        if method.search is not None:
            own = {k: getattr(method.search, k) for k in method.search.model_fields_set}
            spec = spec.model_copy(update=own) if spec is not None else method.search
        return spec if spec is not None and spec.space else None


def file_problems(spec: CompareFile) -> list[tuple[tuple, str]]:
    """Checks across entries that the schema alone cannot make: (location, problem) pairs."""
    return _duplicate_labels(spec) + _per_seed_lengths(spec) + _search_seeds(spec)


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


def _search_seeds(spec: CompareFile) -> list[tuple[tuple, str]]:
    """A search's seed must be one of the grid's: its trials then use that seed's per_seed values."""
    where = [(("search",), spec.search)] + [(("methods", i, "search"), m.search) for i, m in enumerate(spec.methods)]
    return [
        ((*loc, "seed"), f"seed {s.seed} is not one of the grid's seeds {spec.seeds}; pick one of them or null")
        for loc, s in where
        if s is not None and s.seed is not None and s.seed not in spec.seeds
    ]


def load_base(spec: CompareFile, path: Path) -> dict[str, Any]:
    """The base recipe as a mapping: the file's own, or the recipe file it names."""
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
