"""The kinds of object plugins register: Method, Task, Objective, ModelSource and PluginConfig (a recipe section).

They are :class:`typing.Protocol` s: a plugin provides any object with these attributes; there is no
base class to inherit. Heavy libraries (torch, transformers, peft) must only be imported *inside*
methods, so that ``peftkit validate`` and ``peftkit plugins`` stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch


@dataclass
class Example:
    """One raw example as a task yields it; the core tokenises it.

    Attributes:
        text: first (or only) text.
        text_pair: second text for pair tasks (AFQMC, NLI), else None.
        label: index into the task's label space, or None for unlabelled rows (test splits). For a
            task whose rows carry choices: the position of the right answer in ``choices``.
        id: the row's id as the task's submission format wants it back.
        choices: for an objective that scores choices (the built-in multiple choice): the candidate answers, one per
            label, each scored as the pair ``(text, choice)``, or alone when ``text`` is empty (a cloze task
            whose choices are the passage with each candidate filled in); None for classification tasks.
    """

    text: str
    text_pair: str | None = None
    label: int | None = None
    id: Any = None
    choices: list[str] | None = None


def task_objective(task: Any) -> str | None:
    """The objective a task names: its ``objective`` attribute, else its older ``head`` attribute, else None (the
    registry's default objective)."""
    return getattr(task, "objective", None) or getattr(task, "head", None)


def method_objectives(method: Any) -> frozenset[str] | None:
    """The objectives a method trains (its optional ``task_heads`` attribute), or None for every objective."""
    heads = getattr(method, "task_heads", None)
    return None if heads is None else frozenset(heads)


def head_mismatch(task: Any, method: Any, registry: Any, objective: str | None = None) -> str | None:
    """``method X cannot train task Y, which needs a H head`` when the method's task_heads leave out the objective
    the run would train (prefix tuning and a task whose rows carry choices), else None. ``objective`` is a recipe's
    ``task.objective`` standing in for the task's own; ``registry`` gives the default objective of a task that names
    none."""
    heads = method_objectives(method)
    if heads is None:
        return None
    name = objective or task_objective(task) or registry.default_objective
    if name in heads:
        return None
    if objective:
        return f"method {method.name!r} cannot train task {task.name!r} with task.objective {name!r}"
    return f"method {method.name!r} cannot train task {task.name!r}, which needs a {name} head"


def heads_note(method: Any, objective: str) -> str:
    """Why ``method`` refuses ``objective``: the objectives it trains, then its ``task_heads_note`` (one text, or a
    mapping from objective name to the reason for that objective)."""
    note = getattr(method, "task_heads_note", "") or ""
    if isinstance(note, Mapping):
        note = note.get(objective, "")
    trains = ", ".join(sorted(method_objectives(method) or ()))
    return f"{method.name} trains only {trains}" + (f" ({note})" if note else "")


def head_problem(obj: Any, protocol: str, objectives: Sequence[str]) -> str | None:
    """What is wrong with a Task's objective or a Method's ``task_heads`` given the registered ``objectives`` (checked
    when the plugin registers), or None."""
    known = ", ".join(objectives)
    if protocol == "Task":
        name = task_objective(obj)
        if name is not None and name not in objectives:
            attr = "objective" if getattr(obj, "objective", None) else "head"
            return f"{attr} {name!r}, which is not one of {known}"
        return None
    if protocol != "Method" or getattr(obj, "task_heads", None) is None:
        return None
    heads = obj.task_heads
    if isinstance(heads, str) or not isinstance(heads, (set, frozenset, list, tuple)):
        return f"task_heads {heads!r}, not a set of task heads ({known})"
    unknown = [h for h in heads if h not in objectives]
    if unknown:
        return f"task_heads naming {', '.join(map(repr, unknown))}, not one of {known}"
    return None


@dataclass
class ApplyContext:
    """What a method needs to know about the model and run it is applied to.

    Attributes:
        head_modules: names of task-head modules that must train and be saved with the method
            (``classifier``/``score``; the ``pooler`` when the checkpoint had none).
        model_type: ``config.model_type`` of the base model (``bert``, ``llama``, ...).
        total_steps: the run's number of optimizer steps (0 when unknown, e.g. in tests).
        quantization_bits: 4 or 8 when the base is bitsandbytes-quantized, else None.
    """

    head_modules: list[str] = field(default_factory=list)
    model_type: str = ""
    total_steps: int = 0
    quantization_bits: int | None = None


@runtime_checkable
class Method(Protocol):
    """A way to make a base model trainable (LoRA, adapters, full fine-tuning, ...).

    Attributes:
        name: the name recipes use (``method.name``).
        summary: one line for ``peftkit plugins`` and the docs.
        params_model: pydantic model validating ``method.params`` (use ``extra="forbid"``).
        default_lr: learning rate used when ``train.lr`` is not set.
        can_merge: whether :meth:`merge` folds the method into the base weights.
        quantized_bits: base-model bit widths this method trains on (``{4, 8}``, or empty).

    Optional attributes (read with ``getattr``; a method may omit them):
        check: ``check(params, recipe_data) -> list[(dotted_key, message)]``, cross-section checks run
            by ``peftkit validate`` (e.g. AdaLoRA's schedule against ``train.max_steps``).
        quantization_note: why the method refuses a quantized base (when ``quantized_bits`` is empty).
        trains_base_params: full-match regex over the *base* model's parameter names that the method
            unfreezes itself (``.*`` for full fine-tuning, ``.*\\.bias`` for BitFit); None = it only trains
            parameters it adds, plus the task head. The conformance suite checks exactly this set trains.
        task_heads: the objectives (registered names) the method trains; absent = all. Prefix tuning lists only
            sequence classification: its virtual tokens are built per row, not per (row, choice).
        task_heads_note: why an objective is missing from ``task_heads`` (shown when a recipe asks for it): one text,
            or a mapping from objective name to the reason that objective is missing.
        hooks: an object with ``@hookimpl`` lifecycle hooks that fire only in runs of this method (registered
            for the run, unregistered after; AdaLoRA's budget schedule). See the Hooks reference.
    """

    name: str
    summary: str
    params_model: type[BaseModel]
    default_lr: float
    can_merge: bool
    quantized_bits: frozenset[int]

    def apply(self, model: torch.nn.Module, params: BaseModel, ctx: ApplyContext) -> torch.nn.Module:
        """Return the trainable model; only intended parameters have ``requires_grad``."""

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """Write what was trained (and the head) to ``directory``."""

    def load(self, base: torch.nn.Module, directory: Path) -> torch.nn.Module:
        """Rebuild the trained model from a fresh base and :meth:`save`'s output."""

    def merge(self, model: torch.nn.Module) -> torch.nn.Module:
        """Return a plain model with the method folded in; raise PeftkitError if impossible."""

    def facts(self, model: torch.nn.Module) -> dict[str, Any]:
        """Method facts for logs and metrics.json (final AdaLoRA ranks, bottleneck size ...)."""


@runtime_checkable
class Task(Protocol):
    """A dataset with a fixed label space, metrics and a submission format.

    Attributes:
        name: the name recipes use (``task.name``), e.g. ``clue/afqmc``.
        summary: one line for ``peftkit plugins`` and the docs.
        params_model: pydantic model validating ``task.params``.
        metric: the main metric (higher is better) used to keep the best checkpoint.
        splits: which of ``train``/``dev``/``test`` the task can load.

    Optional attributes (read with ``getattr``; a task may omit them):
        check: ``check(params, recipe_data) -> list[(dotted_key, message)]``, cross-section checks of
            the recipe itself; problems make it invalid.
        check_data: ``check_data(params) -> list[(dotted_key, message)]``, cheap checks that the data
            a run would read is there on this machine (files, folders). ``peftkit validate`` prints them
            as warnings (errors with ``--strict``): a recipe may be checked where its data is not.
        objective: the name of the registered :class:`Objective` the task trains (sequence classification, multiple
            choice, ``masked-lm``, ...; ``peftkit plugins`` lists them); absent = the objective registered as the
            default (one logit per label). ``head`` is the older name of this attribute and is still read.
        objective_options: ``objective_options(params) -> dict``, options the objective reads from the task's params
            (the masking unit of ``masked-lm``).
    """

    name: str
    summary: str
    params_model: type[BaseModel]
    metric: str
    splits: ClassVar[tuple[str, ...]] | tuple[str, ...]

    def label_names(self, params: BaseModel) -> list[str]:
        """The fixed label space, in label-id order (never inferred from a subset)."""

    def load_split(self, params: BaseModel, split: str) -> list[Example]:
        """Read one split; raise DataError naming the file and line on bad rows."""

    def compute_metrics(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        """Metrics from predicted and gold label ids; must include :attr:`metric`."""

    def prediction_file(self, params: BaseModel) -> str:
        """File name for test-split predictions, e.g. ``afqmc_predict.json``."""

    def format_prediction(self, example: Example, label_id: int, params: BaseModel) -> dict[str, Any]:
        """One line of the predictions file for ``example``."""


@dataclass
class EncodeContext:
    """What an objective needs to turn a split's rows into tensors.

    Attributes:
        max_length: ``data.max_length``.
        use_token_types: whether the model has segment (token type) embeddings.
        split: ``train``, ``dev`` or ``test``.
        seed: ``train.seed`` (masking objectives derive their random masks from it).
        options: the task's ``objective_options(params)`` (empty when it has none).
        labels: the task's label names, in label-id order (an objective that scores labels by their wording
            falls back on them when the task gives no verbalisations).
    """

    max_length: int
    use_token_types: bool = False
    split: str = "train"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)


@runtime_checkable
class Objective(Protocol):
    """What a model is trained to do: its transformers head, the tensors a task's rows become, the metrics.

    A task names its objective (``Task.objective``); the core loads, batches and evaluates through it and knows
    none by name.

    Attributes:
        name: the name tasks use (``masked-lm``, ...).
        summary: one line for ``peftkit plugins`` and the docs.
        auto_class: the transformers Auto class the base model is loaded with (``AutoModelForMaskedLM``).
        labelled: whether rows carry label ids from the task's label space and a prediction is one label id per
            row (classification); False for objectives whose targets come from the text itself (masked LM).

    Optional attributes (read with ``getattr``):
        default: True for the one objective a task without ``objective`` gets.
        encoder_only: transformers has this head for encoders only; ``peftkit validate`` refuses a decoder.
        decoder_only: the objective needs a decoder (causal attention), though its Auto class loads encoders too;
            ``peftkit validate`` and loading refuse an encoder.
        float_modules: module names kept unquantized on a 4/8-bit base (the head, when it trains).
        load_problem: ``load_problem(exc) -> str | None``, a clearer message when the Auto class refuses a model.
        collapse_wording: ``collapse_wording(top, labels) -> (answer, what)`` for the collapsed-model warning.
        sample_examples: ``sample_examples(n, seed) -> list[Example]``, rows the conformance suite encodes.
        evaluate: ``evaluate(model, data, task, *, batch_size, pad_id, device, precision) -> (metrics,
            predictions)``, used instead of :meth:`score` over the core's evaluation batches when present, for an
            objective that needs the model itself (generating answers, scoring candidates in chunks of its own).
            It returns what :meth:`score` would, and must leave the model's train/eval mode as it found it.
        row_predictions: ``row_predictions(predictions, data) -> list``, for an objective that is not ``labelled``
            but predicts something per row (token classification: a tag per character or word): the predictions
            of :meth:`score` cut into one value per row, which the task's ``format_prediction`` receives in place
            of a label id. Its split then has ``labelled_count``, the rows with targets (test metrics need all).
        chat: ``chat(*, setup, model) -> object``, for an objective whose finished runs can answer chat messages
            (``peftkit serve``'s ``POST /v1/chat/completions``); ``setup`` and ``model`` are what
            :func:`peftkit.load_run` returns. The object has ``context_length`` (int), ``stop_ids`` (token ids that
            end an answer), ``prompt_ids(messages) -> list[int]`` (OpenAI-style ``{"role", "content"}`` messages
            through the run's chat template; DataError when the template refuses them), ``decode(ids) -> str`` and
            ``generate(prompt, *, max_tokens, temperature, top_p, seed, on_token) -> list[int]`` (the answer's ids,
            with the stop token that ended it; greedy at temperature 0; ``on_token(ids so far) -> bool`` after
            each token, True to end the answer). It is called from a worker thread, one request at a time or
            several: it guards its own model.
        recipe_warnings: ``recipe_warnings(*, task, params) -> list[str]``, what a user should hear about running
            ``task`` with its validated ``params`` through this objective that does not make the recipe invalid (label
            wordings that are bare numbers): ``peftkit validate`` prints each line as a warning, and a run logs it.
        overrides: True for an objective a recipe may put in place of a labelled task's own with
            ``task.objective`` (one that scores the same labels another way, such as by their likelihood).
    """

    name: str
    summary: str
    auto_class: str
    labelled: bool

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        """Raise DataError naming the row when one does not fit the objective (labels, choices)."""

    def encode(self, examples: list[Example], tokenizer: Any, ctx: EncodeContext) -> Any:
        """Tokenise a split; the result has ``__len__``, ``lengths`` (per row) and ``collate(idx, pad_id, *, epoch,
        batch)`` returning the model's input tensors (with ``labels`` where the rows have targets); the core sets
        its ``objective`` attribute to this objective (evaluation scores through it)."""

    def model_kwargs(self, labels: list[str]) -> dict[str, Any]:
        """Keyword arguments for ``auto_class.from_pretrained`` (``num_labels`` ...)."""

    def head_modules(self, model: Any, missing_keys: set[str]) -> list[str]:
        """Head modules every method must train and save (those the checkpoint did not have, or always)."""

    def score(
        self, outputs: Iterable[tuple[list[int], dict[str, Any], Any]], data: Any, task: Any
    ) -> tuple[dict[str, float], np.ndarray]:
        """Metrics and predictions from ``(row indices, batch, float logits)`` of every evaluation batch.

        Metrics come from ``task.compute_metrics`` plus the objective's own (``eval_loss``); empty when the rows
        are unlabelled. Predictions: one label id per row in ``data`` order for a ``labelled`` objective."""


@runtime_checkable
class ModelSource(Protocol):
    """Resolves a model reference (``scheme:name``) to a local Hugging Face folder.

    Attributes:
        scheme: the prefix recipes use in ``model.source`` (``local``, ``hub``, ``packaged``).
        summary: one line for ``peftkit plugins`` and the docs.

    Optional (read with ``getattr``): ``model_type(reference, *, revision=None) -> str | None``, the ``model_type``
    the resolved folder will have when that is known without downloading or converting anything (a local
    config.json, the hub cache, a packaged model's known type); ``peftkit validate`` checks the objective's
    ``encoder_only`` / ``decoder_only`` against it.
    """

    scheme: str
    summary: str

    def check(self, reference: str) -> str | None:
        """Cheap validation without loading anything: an error message, or None if plausible."""

    def resolve(self, reference: str, *, revision: str | None = None) -> Path:
        """Return a local folder holding config, weights and tokenizer (may download/convert)."""


@runtime_checkable
class PluginConfig(Protocol):
    """A validated section of its own in recipes, ``plugins_config.<name>``, for a plugin that has settings but
    is neither a method nor a task (a tracker, early stopping). Register it with ``peftkit_register_plugin_configs``;
    ``peftkit validate`` checks the section with ``params_model`` and ``peftkit schema`` shows it.

    Attributes:
        name: the key under ``plugins_config`` (by convention the plugin's entry-point name).
        summary: one line for ``peftkit plugins`` and the docs.
        params_model: pydantic model of the section (use ``extra="forbid"`` so misspelt keys are errors).
    """

    name: str
    summary: str
    params_model: type[BaseModel]


@dataclass(frozen=True)
class ConfigSection:
    """The plain :class:`PluginConfig` most plugins need: ``ConfigSection("early_stopping", "...", Settings)``."""

    name: str
    summary: str
    params_model: type[BaseModel]


def missing_members(obj: object, protocol: type) -> list[str]:
    """The attributes and methods of ``protocol`` (Method, Task, Objective, ModelSource) that ``obj`` lacks."""
    names = [n for n in getattr(protocol, "__annotations__", {})]
    names += [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    return [n for n in dict.fromkeys(names) if not hasattr(obj, n)]
