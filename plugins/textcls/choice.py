"""Task object for multiple choice from your own jsonl files: a passage, an optional question, a list of
choices and the answer (its position, or its text)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftkit import DataError, Example
from peftkit.kit import MULTIPLE_CHOICE, classification_metrics, field, missing_files, read_rows
from peftkit_plugins.textcls.config import MultipleChoiceParams
from peftkit_plugins.textcls.task import row_id

QUESTION_SEP = " "  # between the question and each choice: the second segment reads "question choice"


@dataclass
class ChoiceExample(Example):
    """An :class:`~peftkit.plugin.contracts.Example` that keeps the choices as the file wrote them.

    ``choices`` is what the model scores (with ``question_field`` set, the question in front of each choice);
    ``options`` is the bare choices, for the predictions file.
    """

    options: list[str] | None = None


class MultipleChoice:
    """Pick the right one of ``num_choices`` candidate answers, each read with the row's passage.

    Each choice becomes one ``(passage, choice)`` pair (``(passage, question + " " + choice)`` with
    ``question_field`` set, as the C3 and RACE baselines pair them: truncating a long passage never cuts the
    question), a multiple-choice head scores every pair and the best is the answer. Without a passage
    (``text_field: null``) each choice is scored alone.
    """

    name = "multiple-choice"
    summary = "Pick the right answer among a fixed number of choices, from your own jsonl files; accuracy."
    params_model = MultipleChoiceParams
    metric = "accuracy"
    splits = ("train", "dev", "test")
    head = MULTIPLE_CHOICE

    def check_data(self, params: MultipleChoiceParams) -> list[tuple[str, str]]:
        """For `peftkit validate`: every data file the recipe names exists on this machine."""
        return missing_files(params)

    def label_names(self, params: MultipleChoiceParams) -> list[str]:
        """The choice positions ``"0"`` … ``str(num_choices - 1)``: a label id is where the answer stands."""
        return [str(i) for i in range(params.num_choices)]

    def load_split(self, params: MultipleChoiceParams, split: str) -> list[Example]:
        """Read one split; train and dev rows need a label, test rows may have one."""
        path = {"train": params.train_file, "dev": params.dev_file, "test": params.test_file}[split]
        if path is None:
            return []
        limit = {"train": params.max_train_samples, "dev": params.max_dev_samples}.get(split)
        return [
            to_example(row, params, path, line, position, labelled=split != "test")
            for position, (line, row) in enumerate(read_rows(path, "jsonl", limit=limit))
        ]

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        """Accuracy only: a label id is a position, which has no class to average an F1 over."""
        return {"accuracy": classification_metrics(predictions, references)["accuracy"]}

    def prediction_file(self, params: MultipleChoiceParams) -> str:
        return "test_predictions.jsonl"

    def format_prediction(self, example: Example, label_id: int, params: MultipleChoiceParams) -> dict[str, Any]:
        """``{"id": <row id>, "label": <position of the chosen answer, from 0>, "choice": <its text>}``."""
        options = getattr(example, "options", None) or example.choices or []
        return {"id": example.id, "label": label_id, "choice": options[label_id]}


def to_example(
    row: dict, p: MultipleChoiceParams, path: str, line: int, position: int, labelled: bool
) -> ChoiceExample:
    """One jsonl row as a multiple-choice example; DataError naming ``path:line`` when it does not fit."""
    options = choices_of(row, p, path, line)
    text = "" if p.text_field is None else text_of(row, p.text_field, path, line)
    scored = options
    if p.question_field:
        question = text_of(row, p.question_field, path, line)
        scored = [f"{question}{QUESTION_SEP}{c}" if question else c for c in options]
    label = None
    if labelled or p.label_field in row:
        label = label_of(field(row, p.label_field, path, line), options, p.label_field, path, line)
    return ChoiceExample(
        text, None, label, row_id(row, p.id_field, path, line, position, labelled), scored, options=options
    )


def text_of(row: dict, name: str, path: str, line: int) -> str:
    """``row[name]`` as text: a string or a number; other values (lists, objects) are named."""
    value = field(row, name, path, line)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{path}:{line}: field {name!r} must be a string, got {type(value).__name__} {value!r:.60}")
    return str(value)


def choices_of(row: dict, p: MultipleChoiceParams, path: str, line: int) -> list[str]:
    """The row's choices: a list of exactly ``num_choices`` strings (numbers are read as their text)."""
    value = field(row, p.choices_field, path, line)
    if not isinstance(value, list):
        raise DataError(
            f"{path}:{line}: field {p.choices_field!r} must be a list of choices, got "
            f"{type(value).__name__} {value!r:.60}"
        )
    if len(value) != p.num_choices:
        raise DataError(
            f"{path}:{line}: {len(value)} choices, but task.params.num_choices is {p.num_choices}; every "
            f"row needs exactly {p.num_choices}: pad a shorter row with choices that are never right "
            f'(e.g. "-"; its label stays valid), or change num_choices'
        )
    out = []
    for i, c in enumerate(value):
        if isinstance(c, bool) or not isinstance(c, (str, int, float)):
            raise DataError(
                f"{path}:{line}: choice {i} of {p.choices_field!r} must be a string, got {type(c).__name__} {c!r:.60}"
            )
        out.append(str(c))
    return out


def label_of(raw: Any, options: list[str], name: str, path: str, line: int) -> int:
    """The answer's position: a JSON number is the position (from 0), a string the text of the right choice."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 <= raw < len(options):
            raise DataError(
                f"{path}:{line}: label {raw} is not a choice position: positions run 0 … {len(options) - 1} "
                f"(from 0; subtract 1 from 1-based answers)"
            )
        return raw
    if not isinstance(raw, str):
        raise DataError(
            f"{path}:{line}: field {name!r} must be the answer's position (a number) or the right "
            f"choice's text, got {type(raw).__name__} {raw!r:.60}"
        )
    hits = [i for i, c in enumerate(options) if c == raw]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise DataError(
            f"{path}:{line}: label {raw!r} is choice {' and '.join(map(str, hits))}: the same text twice "
            "makes the answer ambiguous; give the label as a position (a JSON number)"
        )
    hint = f'; if it is a position, write it as a JSON number ({raw}, not "{raw}")' if raw.isdigit() else ""
    raise DataError(
        f"{path}:{line}: label {raw!r} is not one of the row's choices ({', '.join(map(repr, options))})"
        f"; give the right choice's text exactly, or its position from 0{hint}"
    )
