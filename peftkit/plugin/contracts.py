"""The three kinds of object plugins register: Method, Task and ModelSource.

They are :class:`typing.Protocol` s: a plugin provides any object with these attributes; there is no
base class to inherit. Heavy libraries (torch, transformers, peft) must only be imported *inside*
methods, so that ``peftkit validate`` and ``peftkit plugins`` stay fast.
"""

from __future__ import annotations

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
            multiple-choice task: the position of the right answer in ``choices``.
        id: the row's id as the task's submission format wants it back.
        choices: multiple-choice tasks only (``Task.head == "multiple-choice"``): the candidate answers, one per
            label, each scored as the pair ``(text, choice)``, or alone when ``text`` is empty (a cloze task
            whose choices are the passage with each candidate filled in); None for classification tasks.
    """

    text: str
    text_pair: str | None = None
    label: int | None = None
    id: Any = None
    choices: list[str] | None = None


SEQUENCE_CLASSIFICATION = "sequence-classification"
MULTIPLE_CHOICE = "multiple-choice"
HEADS = (SEQUENCE_CLASSIFICATION, MULTIPLE_CHOICE)


def task_head(task: Any) -> str:
    """The model head a task needs: its optional ``head`` attribute, ``sequence-classification`` when absent."""
    return getattr(task, "head", SEQUENCE_CLASSIFICATION)


def method_heads(method: Any) -> frozenset[str]:
    """The task heads a method trains with: its optional ``task_heads`` attribute, every head when absent."""
    return frozenset(getattr(method, "task_heads", HEADS))


def head_mismatch(task: Any, method: Any) -> str | None:
    """``method X cannot train task Y, which needs a H head`` when the method's task_heads leave out the task's
    head (prefix tuning and a multiple-choice task), else None."""
    head = task_head(task)
    if head in method_heads(method):
        return None
    return f"method {method.name!r} cannot train task {task.name!r}, which needs a {head} head"


def head_problem(obj: Any, protocol: str) -> str | None:
    """What is wrong with a Task's ``head`` or a Method's ``task_heads`` (checked when the plugin registers), or None."""
    if protocol == "Task" and task_head(obj) not in HEADS:
        return f"head {task_head(obj)!r}, which is not one of {', '.join(HEADS)}"
    heads = getattr(obj, "task_heads", HEADS) if protocol == "Method" else HEADS
    if isinstance(heads, str) or not isinstance(heads, (set, frozenset, list, tuple)):
        return f"task_heads {heads!r}, not a set of task heads ({', '.join(HEADS)})"
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        return f"task_heads naming {', '.join(map(repr, unknown))}, not one of {', '.join(HEADS)}"
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
        task_heads: the task heads (:data:`HEADS`) the method works with; absent = all. Prefix tuning lists only
            ``sequence-classification``: its virtual tokens are built per row, not per (row, choice).
        task_heads_note: why a head is missing from ``task_heads`` (shown when a recipe asks for it).
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
        head: the model head the task needs: ``sequence-classification`` (the default: one logit per label,
            ``AutoModelForSequenceClassification``) or ``multiple-choice`` (every row carries
            ``Example.choices``, one per label; each ``(text, choice)`` pair gets one score and the
            label is the best choice's position: ``AutoModelForMultipleChoice``, BERT-style encoders).
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


@runtime_checkable
class ModelSource(Protocol):
    """Resolves a model reference (``scheme:name``) to a local Hugging Face folder.

    Attributes:
        scheme: the prefix recipes use in ``model.source`` (``local``, ``hub``, ``packaged``).
        summary: one line for ``peftkit plugins`` and the docs.
    """

    scheme: str
    summary: str

    def check(self, reference: str) -> str | None:
        """Cheap validation without loading anything: an error message, or None if plausible."""

    def resolve(self, reference: str, *, revision: str | None = None) -> Path:
        """Return a local folder holding config, weights and tokenizer (may download/convert)."""


def missing_members(obj: object, protocol: type) -> list[str]:
    """The attributes and methods of ``protocol`` (Method, Task, ModelSource) that ``obj`` lacks."""
    names = [n for n in getattr(protocol, "__annotations__", {})]
    names += [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    return [n for n in dict.fromkeys(names) if not hasattr(obj, n)]
