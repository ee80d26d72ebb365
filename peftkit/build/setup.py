"""From a validated recipe to the objects a run needs: plugins, the task's objective, data, tokenizer, model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from peftkit.build.model import load_model, load_tokenizer, method_float_modules, objective_named, resolve_source
from peftkit.build.selection import apply_selection
from peftkit.plugin.contracts import ApplyContext, EncodeContext
from peftkit.recipe import Recipe, method_params, objective_warnings, task_params

log = logging.getLogger("peftkit")


@dataclass
class Setup:
    """Everything resolved for a recipe, before the model is built."""

    recipe: Recipe
    registry: Any
    method: Any
    task: Any
    mparams: Any
    tparams: Any
    model_path: Path
    tokenizer: Any
    labels: list[str]
    use_token_types: bool
    data: dict[str, Any] = field(default_factory=dict)
    objective: Any = None  # the task's Objective (prepare sets it)

    @cached_property
    def hooks(self) -> Any:
        """The hooks this run calls: every plugin's, or only those in the recipe's ``plugins:`` list (built once,
        not on every step)."""
        return self.registry.hooks_for(self.recipe.plugins)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


def _model_config(path: Path) -> dict[str, Any]:
    import json

    return json.loads((path / "config.json").read_text())


def _uses_token_types(path: Path) -> bool:
    return int(_model_config(path).get("type_vocab_size", 0) or 0) > 1


def _check_max_length(recipe: Recipe, path: Path) -> None:
    """data.max_length beyond the model's position table would crash deep inside the forward pass."""
    from peftkit.errors import PeftkitError

    limit = _model_config(path).get("max_position_embeddings")
    if limit and recipe.data.max_length > int(limit):
        raise PeftkitError(
            f"data.max_length: {recipe.data.max_length} exceeds the model's limit of {limit} positions "
            f"({recipe.model.source}); set data.max_length to {limit} or less"
        )


def _check_metric(recipe: Recipe, task: Any, n_labels: int) -> None:
    """eval.metric must be one the task reports: found out before training, not at the first evaluation."""
    from peftkit.errors import RecipeError
    from peftkit.recipe import metric_problem

    problem = metric_problem(recipe.eval.metric, task, recipe.task.name, n_labels)
    if problem:
        raise RecipeError(f"eval.metric: {problem}")


def prepare(recipe: Recipe, registry: Any, splits: tuple[str, ...] = ("train", "dev")) -> Setup:
    """Resolve plugins (the task's objective too), the model folder and tokenizer, and tokenise the requested splits."""
    method = registry.methods[recipe.method.name]
    task = registry.tasks[recipe.task.name]
    mparams, tparams = method_params(recipe, registry), task_params(recipe, registry)
    path = resolve_source(recipe.model, registry)
    _check_max_length(recipe, path)
    tok = load_tokenizer(path, recipe.model)
    labels = list(task.label_names(tparams))
    _check_metric(recipe, task, len(labels))
    s = Setup(recipe, registry, method, task, mparams, tparams, path, tok, labels, _uses_token_types(path))
    s.objective = registry.objective_of(task, recipe.task.objective)
    for line in objective_warnings(recipe, registry):
        log.warning("%s", line)
    for split in splits:
        if split in task.splits:
            load_split(s, split)
    apply_selection(recipe, s.data)  # eval.split: selection trains on part of train and scores the rest
    return s


def load_split(s: Setup, split: str) -> Any:
    """Read one split through the task, check its rows and encode them through the objective (``s.data[split]``)."""
    objective = s.objective or s.registry.objective_of(s.task)
    examples = checked_examples(s.task.load_split(s.tparams, split), s.task.name, split, len(s.labels), objective)
    options = getattr(s.task, "objective_options", None)
    ctx = EncodeContext(
        max_length=s.recipe.data.max_length,
        use_token_types=s.use_token_types,
        split=split,
        seed=s.recipe.train.seed,
        options=dict(options(s.tparams)) if options else {},
        labels=list(s.labels),
    )
    enc = objective.encode(examples, s.tokenizer, ctx)
    enc.objective = objective
    truncated = getattr(enc, "truncated", 0)
    if truncated and s.recipe.data.truncation_warning:
        log.warning(
            "%s: %d of %d examples are longer than data.max_length=%d tokens and were truncated (their ends are cut "
            "off and never seen); raise data.max_length to keep them whole, or set data.truncation_warning: false",
            split,
            truncated,
            len(enc),
            ctx.max_length,
        )
    if getattr(enc, "indistinct", 0):
        log.warning(
            "%s: in %d of %d rows every choice is the same after truncation to data.max_length=%d (the part where "
            "they differ was cut off), so those rows cannot be answered; raise data.max_length",
            split,
            enc.indistinct,
            len(enc),
            ctx.max_length,
        )
    s.data[split] = enc
    return enc


def checked_examples(raw: Any, task: str, split: str, n_labels: int, head: Any = None) -> list[Any]:
    """What a task's ``load_split`` returned, as a list of examples a run can use; DataError naming the task,
    split and row otherwise. Every row is an Example with string texts; the objective ``head`` (a registered name or
    an Objective; None = the default objective) checks the rest (labels on train and dev rows, choices)."""
    from peftkit.errors import DataError

    who = f"task {task!r}, {split} split"
    if isinstance(raw, (str, bytes, dict)) or not hasattr(raw, "__iter__"):
        raise DataError(f"{who}: load_split returned {type(raw).__name__}, not a list of peftkit.Example")
    examples = list(raw)  # a generator is read once, here (an empty split is refused by encode)
    for i, e in enumerate(examples):
        row = f"{who}: row {i}" + (f" (id {e.id!r})" if getattr(e, "id", None) is not None else "")
        if not all(hasattr(e, a) for a in ("text", "text_pair", "label", "id")):
            raise DataError(
                f"{who}: row {i} is a {type(e).__name__}, not a peftkit.Example(text=..., label=..., id=...)"
            )
        for field_name in ("text", "text_pair"):
            value = getattr(e, field_name)
            if not isinstance(value, str) and not (field_name == "text_pair" and value is None):
                raise DataError(f"{row}: {field_name} is {type(value).__name__} {value!r:.40}, not a string")
    objective_named(head).check_rows(examples, who, split, n_labels)
    return examples


def build_model(s: Setup, total_steps: int = 0, *, trained: Path | None = None) -> tuple[Any, ApplyContext]:
    """Load the base (seeded by the caller) and apply the method, or load a trained one from ``trained``."""
    q = s.recipe.model.quantization
    # modules the method trains in full must not be quantized (bitsandbytes integers cannot train)
    keep = method_float_modules(s.method, s.mparams, s.model_path, total_steps, trained) if q else []
    model, heads = load_model(
        s.model_path,
        s.recipe.model,
        s.labels,
        s.tokenizer,
        gradient_checkpointing=s.recipe.train.gradient_checkpointing,
        keep_float=keep,
        head=s.objective or s.registry.objective_of(s.task),
    )
    ctx = ApplyContext(
        head_modules=heads,
        model_type=model.config.model_type,
        total_steps=total_steps,
        quantization_bits=q.bits if q else None,
    )
    if trained is not None:
        return s.method.load(model, trained), ctx
    return s.method.apply(model, s.mparams, ctx), ctx
