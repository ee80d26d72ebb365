from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TextClassificationParams(BaseModel):
    """``task.params`` for ``text-classification``."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(description="Training data (jsonl, csv or tsv).")
    dev_file: str | None = Field(None, description="Held-out data for evaluation and best-checkpoint selection.")
    test_file: str | None = Field(None, description="Unlabelled (or labelled) data to predict with `peftkit predict`.")
    format: Literal["auto", "jsonl", "csv", "tsv"] = Field("auto", description="File format; auto = from the extension.")
    text_field: str = Field("text", description="Field holding the (first) text.")
    text_pair_field: str | None = Field(None, description="Field holding the second text, for pair tasks.")
    label_field: str = Field("label", description="Field holding the label.")
    id_field: str | None = Field(None, description="Field used as the id in prediction files; null = the row's position among the file's data rows, from 0 (a CSV header and blank lines do not count).")
    labels: list[str] | None = Field(
        None, description="The label space in id order. null = the sorted distinct labels of the whole train_file."
    )
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows (quick runs).")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev rows.")
