"""The ``sequence-classification`` and ``multiple-choice`` objectives (Objective protocol)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peftkit import DataError, EncodeContext, Example
from peftkit.kit import (
    FAMILIES,
    MULTIPLE_CHOICE,
    SEQUENCE_CLASSIFICATION,
    check_labels,
    classifier_heads,
    encode,
    row_logits,
    row_name,
    scores,
)

if TYPE_CHECKING:
    import numpy as np


class _Classification:
    """What both objectives share: one label id per row, a classifier head, per-row logits."""

    name: str
    labelled = True

    def encode(self, examples: list[Example], tokenizer: Any, ctx: EncodeContext) -> Any:
        return encode(examples, tokenizer, ctx.max_length, use_token_types=ctx.use_token_types, split=ctx.split)

    def model_kwargs(self, labels: list[str]) -> dict[str, Any]:
        return {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }

    def head_modules(self, model: Any, missing_keys: set[str]) -> list[str]:
        """The classifier (``classifier``/``score``) always; the pooler when the checkpoint had none."""
        return classifier_heads(model, missing_keys)

    def score(self, outputs: Any, data: Any, task: Any) -> tuple[dict[str, float], np.ndarray]:
        """Argmax label ids per row; the task's metrics and ``eval_loss`` when every row has a label."""
        logits, loss = row_logits(outputs, len(data))
        preds = logits.argmax(-1)
        if not (data.labels >= 0).all():
            return {}, preds
        return scores(task, preds, data.labels, loss), preds

    def sample_examples(self, n: int, seed: int) -> list[Example]:
        """Rows of :func:`peftkit.kit.tiny.sentiment_rows` (labels ``neg``/``pos``), for the conformance suite."""
        from peftkit.kit.tiny import sentiment_rows

        return [Example(r["text"], label=int(r["label"] == "pos"), id=r["id"]) for r in sentiment_rows(n, seed)]


class SequenceClassification(_Classification):
    """One label per text (or text pair): ``AutoModelForSequenceClassification``, a classifier on the first
    token (encoders) or the last (decoders)."""

    name = SEQUENCE_CLASSIFICATION
    summary = "One label per text or text pair; the objective of tasks that name none."
    auto_class = "AutoModelForSequenceClassification"
    default = True

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        for i, e in enumerate(examples):
            if getattr(e, "choices", None) is not None:
                raise DataError(
                    f"{row_name(where, i, e)} has choices, but the task's head is {self.name!r}; a multiple-choice "
                    f"task sets head = {MULTIPLE_CHOICE!r}"
                )
        check_labels(examples, where, split, n_labels)


class MultipleChoice(_Classification):
    """Every row carries ``Example.choices``, one per label; each ``(text, choice)`` pair gets one score and the
    label is the best choice's position (``AutoModelForMultipleChoice``, BERT-style encoders)."""

    name = MULTIPLE_CHOICE
    summary = "Pick one of a row's choices: one score per (text, choice) pair (encoders only)."
    auto_class = "AutoModelForMultipleChoice"
    encoder_only = True

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        for i, e in enumerate(examples):
            _check_choices(e, row_name(where, i, e), n_labels)
        check_labels(examples, where, split, n_labels)

    def load_problem(self, exc: Exception) -> str | None:
        """For an architecture without a multiple-choice head: transformers' first line and what to choose."""
        text = str(exc)
        if "Unrecognized configuration class" not in text:
            return None
        from transformers.models.auto.modeling_auto import MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES as HAVE

        known = [t for t in FAMILIES if t in HAVE]
        return (
            text.strip().splitlines()[0] + f" transformers has a multiple-choice head for {len(HAVE)} model types, "
            f"among them {', '.join(known)} (not decoders such as llama, qwen2, gemma): choose such a model.source "
            "for this task"
        )

    def collapse_wording(self, top: int, labels: list[str]) -> tuple[str, str]:
        return f"choice {top} (counting from 0)", "one choice position"

    def sample_examples(self, n: int, seed: int) -> list[Example]:
        """Which of two words ("good", "bad") has the row's sentiment: the right one comes first in even rows and
        second in odd rows (the label is its position)."""
        rows = []
        for i, e in enumerate(super().sample_examples(n, seed)):
            right, wrong = ("good", "bad") if e.label == 1 else ("bad", "good")
            rows.append(Example(e.text, label=i % 2, id=e.id, choices=[right, wrong] if i % 2 == 0 else [wrong, right]))
        return rows


def _check_choices(e: Any, row: str, n_labels: int) -> None:
    choices = getattr(e, "choices", None)
    need = f"a multiple-choice row needs Example.choices, a list of {n_labels} strings (one per label)"
    if not isinstance(choices, (list, tuple)):
        raise DataError(f"{row}: {need}, got {type(choices).__name__} {choices!r:.40}")
    if len(choices) != n_labels:
        raise DataError(f"{row}: {need}, got {len(choices)} choices")
    bad = next((i for i, c in enumerate(choices) if not isinstance(c, str)), None)
    if bad is not None:
        raise DataError(f"{row}: {need}; choice {bad} is {type(choices[bad]).__name__} {choices[bad]!r:.40}")
    if e.text_pair is not None:
        raise DataError(
            f"{row}: a multiple-choice row has no text_pair (it would not be read): put it into text, which "
            "is read with every choice, or into each choice"
        )
