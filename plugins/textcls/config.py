"""``task.params`` models of the own-data tasks: ``text-classification`` and ``multiple-choice``."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextClassificationParams(BaseModel):
    """``task.params`` for ``text-classification``."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(description="Training data (jsonl, csv or tsv).")
    dev_file: str | None = Field(None, description="Held-out data for evaluation and best-checkpoint selection.")
    test_file: str | None = Field(None, description="Unlabelled (or labelled) data to predict with `peftkit predict`.")
    format: Literal["auto", "jsonl", "csv", "tsv"] = Field(
        "auto", description="File format; auto = from the extension."
    )
    text_field: str = Field("text", description="Field holding the (first) text.")
    text_pair_field: str | None = Field(None, description="Field holding the second text, for pair tasks.")
    label_field: str = Field("label", description="Field holding the label.")
    id_field: str | None = Field(
        None,
        description="Field used as the id in prediction files; null = the row's position among the file's data rows, from 0 (a CSV header and blank lines do not count).",
    )
    labels: list[str] | None = Field(
        None, description="The label space in id order. null = the sorted distinct labels of the whole train_file."
    )
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows (quick runs).")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev rows.")


class MultipleChoiceParams(BaseModel):
    """``task.params`` for ``multiple-choice``."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(description="Training data: jsonl, one JSON object per line with its choices as a list.")
    dev_file: str | None = Field(None, description="Held-out data for evaluation and best-checkpoint selection.")
    test_file: str | None = Field(None, description="Rows to predict with `peftkit predict` (labels optional).")
    num_choices: int = Field(
        gt=1,
        description="Choices per row; every row must have exactly this many (the label "
        "space is the positions 0 … num_choices-1).",
    )
    text_field: str | None = Field(
        "text",
        description="Field holding the passage (context) every choice is read "
        "with; null = no passage, each choice is scored alone (cloze with the candidate "
        "already written into the blank).",
    )
    question_field: str | None = Field(
        None,
        description="Field holding a question, joined in front of each choice "
        "(question + ' ' + choice, paired with the passage); null = no question.",
    )
    choices_field: str = Field("choices", description="Field holding the candidate answers, a list of strings.")
    label_field: str = Field(
        "label",
        description="Field holding the answer: its position in the choices (a JSON "
        "number, from 0) or the text of the right choice.",
    )
    id_field: str | None = Field(
        None,
        description="Field used as the id in prediction files; null = the row's "
        "position among the file's rows, from 0 (blank lines do not count).",
    )
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows (quick runs).")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev rows.")

    @field_validator("train_file", "dev_file", "test_file")
    @classmethod
    def _jsonl_only(cls, path: str | None) -> str | None:
        if path is not None and Path(path).suffix.lower() in {".csv", ".tsv", ".txt"}:
            raise ValueError(
                "multiple-choice reads jsonl, not csv/tsv: convert the file to one JSON object per line, "
                "its choices gathered into one list field (choices_field)"
            )
        return path
