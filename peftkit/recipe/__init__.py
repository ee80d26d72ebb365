"""Recipes: YAML → overrides → validated :class:`Recipe`, with every problem reported at once.

Validation has two stages: the core schema below, then ``method.params`` / ``task.params`` through
the plugin's own pydantic model. Errors carry dotted paths and, where known, the YAML line.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from peftkit.errors import RecipeError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class QuantizationConfig(_Strict):
    bits: Literal[4, 8] = Field(description="Quantize the base model's linear layers to 4 or 8 bits (bitsandbytes).")
    type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; nf4 suits normally distributed weights.")
    double_quant: bool = Field(
        True, description="4-bit only: also quantize the quantization constants (saves ~0.4 bit/param)."
    )
    compute_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of matmuls in 4-bit layers; bfloat16 on GPUs that support it."
    )


class ModelConfig(_Strict):
    source: str = Field(
        description="Model reference `scheme:name`: `packaged:multilingual-e5-small`, `hub:bert-base-chinese`, "
        "`local:/path` (a bare path also works). See `peftkit plugins` for the schemes installed."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for `hub:` models.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; `auto` = float32 on CPU, the checkpoint's dtype otherwise."
    )
    quantization: QuantizationConfig | None = Field(None, description="Load the base quantized (QLoRA); null = off.")
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with a hub checkpoint. Off unless you trust it."
    )
    allow_pickle: bool = Field(
        False, description="Allow loading `.bin`/`.pt` (pickle) weights; safetensors only when false."
    )

    @field_validator("quantization", mode="before")
    @classmethod
    def _quantization_mapping(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, (dict, QuantizationConfig)):
            raise ValueError(f"must be a mapping such as {{bits: 4}} (or null for none), got {v!r}")
        return v


class MethodConfig(_Strict):
    name: str = Field(
        description="Registered method name (`peftkit plugins` lists them): lora, adalora, adapters, full, ..."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Method parameters, validated by the method plugin."
    )


class TaskConfig(_Strict):
    name: str = Field(description="Registered task name, e.g. `clue/afqmc` or `text-classification`.")
    params: dict[str, Any] = Field(default_factory=dict, description="Task parameters, validated by the task plugin.")


class DataConfig(_Strict):
    max_length: int = Field(
        128, gt=0, description="Tokens per example after truncation. Longer = slower, rarely better on CLUE."
    )
    group_by_length: bool = Field(
        True, description="Batch examples of similar length (still shuffled) so less padding is computed: faster."
    )
    truncation_warning: bool = Field(True, description="Log how many examples were truncated.")
    selection_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="With eval.split: selection, the share of training rows held out (per label, by train.seed) "
        "to evaluate on; the run trains on the rest.",
    )


class TrainConfig(_Strict):
    epochs: float = Field(3, gt=0, description="Passes over the training set (fractions allowed).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(32, gt=0, description="Examples per forward pass (per process).")
    grad_accum: int = Field(
        1, gt=0, description="Forward passes per optimizer step; effective batch = batch_size × grad_accum × processes."
    )
    lr: float | None = Field(
        None, gt=0, description="Peak learning rate; null = the method's default (LoRA 1e-3, full 3e-5, ...)."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and LayerNorm).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Decay after warmup.")
    warmup: float = Field(0.06, ge=0, description="Warmup: a fraction of total steps if < 1, else a number of steps.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip gradients to this norm; null = no clipping.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast for training and every evaluation of the run; `auto` = bf16 on GPUs that support "
        "it, none on CPU. `bf16` also runs on CPUs with AVX512-BF16 (measured: evaluation 1.7× faster, same accuracy).",
    )
    seed: int = Field(
        42, ge=0, description="Seed for weights, dropout and data order (set before any weight is created)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% slower."
    )
    compile: bool = Field(
        False,
        description="torch.compile the model for training (through Accelerate: inductor, each repeated transformer "
        "block compiled once, dynamic shapes). Pays on GPUs over long runs; on a 2-core CPU it cost ~1 min of compiling "
        "and gained nothing (measured). Evaluation stays eager.",
    )
    log_every: int = Field(
        10,
        gt=0,
        description="Every N optimizer steps, log the mean training loss of those N steps "
        "(TensorBoard and metrics.json keep every step's).",
    )
    checkpoint_every: int | None = Field(
        None,
        gt=0,
        description="Write a resumable checkpoint every N optimizer steps (always at epoch ends); null = epoch ends only.",
    )
    keep_checkpoints: int = Field(
        2, gt=0, description="How many of the newest resumable checkpoints to keep (the best model is kept separately)."
    )

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        return "no" if v is False else v  # YAML reads a bare `no` as false

    @field_validator("adam_betas", mode="before")
    @classmethod
    def _two_betas(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"must be two numbers [beta1, beta2], e.g. [0.9, 0.999], got {v!r}")
        return v

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class EvalConfig(_Strict):
    every: Literal["epoch"] | int = Field(
        "epoch", description="Evaluate on dev every epoch, or every N optimizer steps."
    )
    metric: str | None = Field(
        None, description="Metric that picks the best checkpoint; null = the task's main metric."
    )
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Evaluation batch size; null = train.batch_size in float32, 4 × train.batch_size under "
        "bf16/fp16 mixed precision (batches are sorted by length; on a 2-core CPU float32 peaks at 32, bf16 at ~128).",
    )
    merged: bool = Field(
        True,
        description="Final evaluation and test predictions use the saved model with the method merged into a copy "
        "of the base weights, when the method can merge and the base is not quantized: the same function up to float "
        "rounding, and faster (LoRA on CPU: ~1.3×). Evaluations during training always use the unmerged model.",
    )
    predict: bool = Field(
        False, description="After training, write test-split predictions in the task's submission format."
    )
    split: Literal["dev", "selection"] = Field(
        "dev",
        description="What evaluations (best checkpoint, final metrics) score: dev, or `selection` = "
        "data.selection_fraction of the training rows, held out from training, so choosing settings on it "
        "leaves dev an honest estimate (what a compare file's `search:` uses by default).",
    )

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        if v == "epoch" or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"must be 'epoch' or a number of steps > 0, got {v!r}")


class Recipe(_Strict):
    """A whole run: model × method × task × training settings."""

    model: ModelConfig
    method: MethodConfig
    task: TaskConfig
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: str = Field(description="Folder for the adapter/weights, metrics.json, logs and TensorBoard events.")
    plugins: list[str] | None = Field(
        None,
        description="Allow-list of installed plugins (names as `peftkit plugins` shows them) this recipe uses: "
        "its method, task and model source must come from them, and only their hooks run (leave out `tensorboard` "
        "and no TensorBoard events are written). null = every installed plugin.",
    )

    @field_validator("output_dir", mode="before")
    @classmethod
    def _folder(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)  # output_dir=2024 on the command line reads as a number
        if isinstance(v, str) and not v.strip():
            raise ValueError("must name a folder, e.g. runs/my-run")
        return v


# ----------------------------------------------------------------------------------------------- loading


def line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a YAML document, list indices included (``methods.2.params``), to its 1-based line,
    for error messages (recipes and compare files)."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (str(k.value),)
                index[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = path + (str(i),)
                index[key] = v.start_mark.line + 1
                walk(v, key)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


class RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys (PyYAML keeps the last silently, dropping the first block)
    and reads ``1e-3`` as a float, as YAML 1.2 and editors do (PyYAML's YAML 1.1 wants ``1.0e-3``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # unhashable keys: SafeLoader reports them itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key]}): the second would silently replace "
                    "the first; merge them into one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# a copy of the resolver table: add_implicit_resolver on a subclass would append to SafeLoader's own lists
RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def parse_yaml(text: str, source: str = "<recipe>") -> dict[str, Any]:
    """Load a recipe or compare file (:class:`RecipeLoader`) with errors that give file:line:column."""
    try:
        data = yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([f"{where}: YAML syntax error: {problem}"], source) from None
    if data is None:
        raise RecipeError([f"{source}: the file is empty; a recipe needs model, method, task and output_dir"], source)
    if not isinstance(data, dict):
        raise RecipeError([f"{source}: a recipe must be a mapping of keys, got {type(data).__name__}"], source)
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> str | None:
    """``data[a][b][c] = value`` for ``key = "a.b.c"``, creating mappings on the way (the one dotted-key setter:
    overrides, compare files and search values all use it). Returns a problem instead when a step is not a mapping."""
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            return (
                f"{'.'.join(parts[: i + 1])} is {type(nxt).__name__}, not a mapping, so it has no key {parts[i + 1]!r}"
            )
        node = nxt
    node[parts[-1]] = value
    return None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML, so ``train.lr=3e-4`` is a float)."""
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
            continue
        key, _, raw = item.partition("=")
        problem = set_dotted(data, key, _parse_value(raw))
        if problem:
            problems.append(f"override {item!r}: {problem}")
    if problems:
        raise RecipeError(problems)
    return data


def selection_metric(recipe: Recipe, task: Any) -> str:
    """The metric that picks the best checkpoint and ranks runs: ``eval.metric``, else the task's own."""
    return recipe.eval.metric or task.metric


def _parse_value(raw: str) -> Any:
    """An override value as a recipe file would read it (``3e-4`` is a float, ``[a,b]`` a list)."""
    if not raw.strip():
        return ""
    try:
        return yaml.load(raw, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return raw


def _fmt_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "__root__") or "(top level)"


def pydantic_problems(exc: ValidationError, prefix: tuple = (), fields: dict | None = None) -> list[tuple[tuple, str]]:
    """Turn a pydantic error into ``(path, message)`` pairs, with nearest-key hints for typos."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(fields, err["loc"][:-1]) if fields is not None else None
            choices = list(parent.model_fields) if parent is not None else []
            near = difflib.get_close_matches(str(loc[-1]), choices, n=1)
            hint = (
                f" — did you mean {near[0]!r}?" if near else (f" (valid keys: {', '.join(choices)})" if choices else "")
            )
            out.append((loc, f"unknown key{hint}"))
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if kind == "missing":
            out.append((loc, "required key is missing"))
            continue
        got = err.get("input")
        # a validator's own message may already say what it got ("..., got 0"): do not repeat it
        got_s = f", got {got!r}" if not isinstance(got, (dict, list)) and ", got " not in msg else ""
        if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
            msg = msg.replace("Input should be", "must be")
        out.append((loc, f"{msg[0].lower() + msg[1:]}{got_s}"))
    return out


def _model_at(model: Any, loc: tuple) -> Any:
    """The pydantic model class at ``loc`` inside ``model`` (for listing valid keys)."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return None
    return model


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"train.lr": 0.001, ...}`` (dotted keys, as overrides write them; empty mappings kept)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def override_keys(overrides: list[str]) -> dict[tuple[str, ...], str]:
    """``{key path: "key=value"}`` of command-line overrides, so errors point at them rather than the file."""
    return {tuple(item.partition("=")[0].strip().split(".")): item for item in overrides if "=" in item}


def _format(
    problems: list[tuple[tuple, str]],
    lines: dict,
    source: str | None,
    overridden: dict[tuple[str, ...], str] | None = None,
) -> list[str]:
    out = []
    for loc, msg in problems:
        path = _fmt_path(loc)
        keys = [tuple(str(p) for p in loc[:n]) for n in range(len(loc), 0, -1)]
        item = next((overridden[k] for k in keys if k in (overridden or {})), None)
        line = next((lines[k] for k in keys if lines.get(k)), None)
        where = f" (command-line override {item})" if item else f" ({source}:{line})" if (line and source) else ""
        out.append(f"{path}: {msg}{where}")
    return out


def validate(
    data: dict[str, Any],
    *,
    registry: Any = None,
    source: str | None = None,
    text: str = "",
    overridden: dict[tuple[str, ...], str] | None = None,
) -> Recipe:
    """Validate raw recipe data: core schema, then plugin params. Raises one RecipeError listing all problems.

    ``overridden`` (from :func:`override_keys`): keys set on the command line, named as such in errors."""
    from peftkit.plugin.registry import get_registry

    lines = line_index(text) if text else {}
    problems: list[tuple[tuple, str]] = []
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += pydantic_problems(exc, fields=Recipe)
        recipe = None
    reg = registry or get_registry()
    problems += _check_plugins(data, reg)
    if problems:
        raise RecipeError(_format(problems, lines, source, overridden), source)
    try:
        reg.hooks_for(recipe.plugins).peftkit_configure(recipe=recipe)
    except RecipeError as exc:  # a plugin refused the recipe: say which, and which file
        raise RecipeError([f"{line} (refused by {_configure_site(exc)})" for line in exc.problems], source) from exc
    return recipe


def _configure_site(exc: BaseException) -> str:
    """``peftkit_configure in acme/__init__.py:12``: the plugin function that raised ``exc``."""
    import traceback

    for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
        if frame.f_code.co_name == "peftkit_configure":
            return f"peftkit_configure in {frame.f_globals.get('__name__', '?')} ({Path(frame.f_code.co_filename).name}:{line})"
    return "a plugin's peftkit_configure"


def _closest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" — did you mean {near[0]!r}?" if near else ""


def _check_plugins(data: dict[str, Any], reg: Any) -> list[tuple[tuple, str]]:
    """Stage two: names exist (and are allowed), params validate through the plugin's schema."""
    problems: list[tuple[tuple, str]] = []
    allowed = data.get("plugins") if isinstance(data.get("plugins"), list) else None
    for i, name in enumerate(allowed or []):
        if name not in reg.plugins:
            avail = ", ".join(sorted(reg.plugins)) or "none"
            problems.append(
                (
                    ("plugins", str(i)),
                    f"unknown plugin {name!r}{_closest(str(name), list(reg.plugins))} "
                    f"(installed: {avail}){reg.broken_note()}",
                )
            )
    for section, table, kind in (("method", reg.methods, "method"), ("task", reg.tasks, "task")):
        sec = data.get(section)
        if not isinstance(sec, dict) or not isinstance(sec.get("name"), str):
            continue
        name = sec["name"]
        obj = table.get(name)
        if obj is None:
            avail = ", ".join(sorted(table)) or "none installed"
            problems.append(
                (
                    (section, "name"),
                    f"unknown {kind} {name!r}{_closest(name, list(table))} (available: {avail}){reg.broken_note()}",
                )
            )
            continue
        owner = _owner(reg, section, name)
        if allowed is not None and owner not in allowed:
            problems.append(
                (
                    (section, "name"),
                    f"{kind} {name!r} comes from plugin {owner!r}, which is not in `plugins:` ({', '.join(map(str, allowed))})",
                )
            )
        params = sec.get("params") or {}
        if not isinstance(params, dict):
            continue  # the core schema already reported it
        try:
            obj.params_model.model_validate(params)
        except ValidationError as exc:
            problems += pydantic_problems(exc, prefix=(section, "params"), fields=obj.params_model)
            continue
        check = getattr(obj, "check", None)  # optional: cross-section checks (quantization, step budgets, data files)
        if check is not None:
            for loc, msg in check(obj.params_model.model_validate(params), data):
                problems.append((tuple(loc.split(".")), msg))
        metric = data["eval"].get("metric") if isinstance(data.get("eval"), dict) else None
        if section == "task" and isinstance(metric, str):
            problem = metric_problem(metric, obj, name, 2)
            if problem:
                problems.append((("eval", "metric"), problem))
        elif section == "task" and metric is None:
            reported = reported_metrics(obj, 2)
            if obj.metric not in reported:  # the task's own metric: a bug in its plugin, not in the recipe
                problems.append(
                    (
                        ("task", "name"),
                        f"task {name!r} keeps the best checkpoint by its main metric "
                        f"{obj.metric!r} (Task.metric), but its compute_metrics does not report it: "
                        f"reports {', '.join(reported)}; fix the task's plugin, or set eval.metric",
                    )
                )
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("source"), str):
        problems += _check_source(model["source"], reg, allowed)
    problems += _check_quantization(data, reg)
    problems += _check_task_head(data, reg)
    return problems


def reported_metrics(task: Any, n_labels: int) -> list[str]:
    """The metric names a task's ``compute_metrics`` reports (sorted), from a dummy prediction of ``n_labels`` classes."""
    import numpy as np

    ids = np.arange(max(n_labels, 2)) % max(n_labels, 1)
    return sorted(task.compute_metrics(ids, ids))


def metric_problem(metric: str | None, task: Any, task_name: str, n_labels: int) -> str | None:
    """Why ``eval.metric`` is not one the task reports (None when it is, or unset): the task's metrics on a
    dummy prediction of ``n_labels`` classes name what it reports."""
    if metric is None:
        return None
    reported = reported_metrics(task, n_labels)
    if metric in reported:
        return None
    return (
        f"{metric!r} is not a metric of task {task_name!r}, which reports {', '.join(reported)}; use one "
        f"of them, or remove eval.metric for the task's main metric ({task.metric})"
    )


def data_problems(recipe: Recipe, registry: Any = None) -> list[str]:
    """What a run of ``recipe`` on this machine would miss (data files, folders), from the task's optional
    ``check_data``: one line per problem, starting with the dotted key."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    task = reg.tasks[recipe.task.name]
    check = getattr(task, "check_data", None)
    if check is None:
        return []
    return [f"{key}: {msg}" for key, msg in check(task.params_model.model_validate(recipe.task.params))]


def _check_quantization(data: dict[str, Any], reg: Any) -> list[tuple[tuple, str]]:
    model, method = data.get("model"), data.get("method")
    if not (isinstance(model, dict) and isinstance(model.get("quantization"), dict) and isinstance(method, dict)):
        return []
    bits = model["quantization"].get("bits")
    obj = reg.methods.get(method.get("name"))
    if obj is None or bits not in (4, 8) or bits in obj.quantized_bits:
        return []
    ok = sorted(n for n, m in reg.methods.items() if bits in m.quantized_bits)
    why = (
        getattr(obj, "quantization_note", "")
        or "it trains base weights, which are frozen integers in a quantized model"
    )
    return [
        (
            ("model", "quantization"),
            f"method {obj.name!r} cannot train a {bits}-bit base: {why}. "
            f"Remove model.quantization, or use one of: {', '.join(ok)}",
        )
    ]


def _check_task_head(data: dict[str, Any], reg: Any) -> list[tuple[tuple, str]]:
    """A multiple-choice task needs a method that works with that head (prefix tuning does not)."""
    from peftkit.plugin.contracts import MULTIPLE_CHOICE, head_mismatch, method_heads, task_head

    method, task = data.get("method"), data.get("task")
    if not (isinstance(method, dict) and isinstance(task, dict)):
        return []
    if not (isinstance(method.get("name"), str) and isinstance(task.get("name"), str)):
        return []  # a name that is not a string (a list, a mapping) is already reported by the schema
    m, t = reg.methods.get(method["name"]), reg.tasks.get(task["name"])
    if t is not None and task_head(t) == MULTIPLE_CHOICE:
        decoder = _local_decoder(data.get("model"))
        if decoder:
            return [
                (
                    ("model", "source"),
                    f"task {t.name!r} needs a multiple-choice head, which transformers has for "
                    f"encoders (bert, xlm-roberta, ...) but not for {decoder} models like this one; use an encoder",
                )
            ]
    mismatch = head_mismatch(t, m) if m is not None and t is not None else None
    if mismatch is None:
        return []
    ok = sorted(n for n, x in reg.methods.items() if head_mismatch(t, x) is None)
    why = getattr(m, "task_heads_note", "") or f"it lists only {', '.join(sorted(method_heads(m)))} in task_heads"
    return [(("method", "name"), f"{mismatch}: {why}. Use one of: {', '.join(ok)}")]


def _local_decoder(model: Any) -> str | None:
    """The model_type of a ``local:`` model folder when it is a decoder family (read from config.json, nothing imported)."""
    import json

    from peftkit.plugin.architectures import DECODER, FAMILIES

    if not isinstance(model, dict) or not isinstance(model.get("source"), str):
        return None
    scheme, rest = split_source(model["source"])
    config = Path(rest).expanduser() / "config.json"
    if scheme != "local" or not config.is_file():
        return None
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None
    return kind if FAMILIES.get(kind) is DECODER else None


def _owner(reg: Any, section: str, name: str) -> str | None:
    return reg.owners.get(({"method": "methods", "task": "tasks", "model": "sources"}[section], name))


def split_source(ref: str) -> tuple[str, str]:
    """``scheme:rest``; a bare path (``/x``, ``./x``, ``~/x``) is ``local``, anything else without a scheme is ``hub``."""
    if ref.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(ref)):
        return "local", ref
    scheme, sep, rest = ref.partition(":")
    if sep and scheme and "/" not in scheme:
        return scheme, rest
    return "hub", ref


def _check_source(ref: str, reg: Any, allowed: list[str] | None = None) -> list[tuple[tuple, str]]:
    scheme, rest = split_source(ref)
    src = reg.sources.get(scheme)
    if src is None:
        avail = ", ".join(sorted(reg.sources)) or "none installed"
        return [
            (
                ("model", "source"),
                f"unknown model source scheme {scheme!r}{_closest(scheme, list(reg.sources))} (available: {avail}){reg.broken_note()}",
            )
        ]
    owner = _owner(reg, "model", scheme)
    if allowed is not None and owner not in allowed:
        return [
            (
                ("model", "source"),
                f"model source {scheme + ':'!r} comes from plugin {owner!r}, which is not in `plugins:` ({', '.join(map(str, allowed))})",
            )
        ]
    msg = src.check(rest)
    return [(("model", "source"), msg)] if msg else []


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None, *, registry: Any = None) -> Recipe:
    """Read, override and validate a recipe file. Raises :class:`RecipeError` listing every problem."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a recipe file" if p.is_dir() else "no such recipe file"
        raise RecipeError([f"{path}: {what}"], str(path))
    text = p.read_text(encoding="utf-8")
    data = parse_yaml(text, str(path))
    if isinstance(data, dict) and {"methods", "tasks"} <= set(data) and not {"method", "task"} & set(data):
        raise RecipeError(
            [
                f"{path} is a compare file (methods × tasks × seeds), not a recipe: check it with "
                f"`peftkit compare {path} --dry-run`, run it with `peftkit compare {path}`"
            ],
            str(path),
        )
    data = apply_overrides(data, list(overrides or []))
    return validate(
        data, registry=registry, source=str(path), text=text, overridden=override_keys(list(overrides or []))
    )


def method_params(recipe: Recipe, registry: Any) -> BaseModel:
    return registry.methods[recipe.method.name].params_model.model_validate(recipe.method.params)


def task_params(recipe: Recipe, registry: Any) -> BaseModel:
    return registry.tasks[recipe.task.name].params_model.model_validate(recipe.task.params)


def resolved_dict(recipe: Recipe, registry: Any) -> dict[str, Any]:
    """The recipe with every default filled in, plugin params included (what output_dir/recipe.yaml holds)."""
    d = recipe.model_dump(mode="json")
    d["method"]["params"] = method_params(recipe, registry).model_dump(mode="json")
    d["task"]["params"] = task_params(recipe, registry).model_dump(mode="json")
    return d


def json_schema(registry: Any = None) -> dict[str, Any]:
    """JSON Schema for recipes: the core schema, with method/task params as a oneOf per registered name."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for section, table in (("method", reg.methods), ("task", reg.tasks)):
        variants = []
        for name, obj in sorted(table.items()):
            sub = obj.params_model.model_json_schema(ref_template="#/$defs/{model}")
            defs.update(sub.pop("$defs", {}))
            key = f"{section}:{name}".replace("/", "_").replace(":", "_")
            defs[key] = sub
            variants.append(
                {
                    "if": {"properties": {"name": {"const": name}}},
                    "then": {"properties": {"params": {"$ref": f"#/$defs/{key}"}}},
                }
            )
        cfg = "MethodConfig" if section == "method" else "TaskConfig"
        defs[cfg]["properties"]["name"]["enum"] = sorted(table)
        defs[cfg]["allOf"] = variants
    schema["title"] = "peftkit recipe"
    return schema
