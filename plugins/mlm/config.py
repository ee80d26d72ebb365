"""``task.params`` of the ``mlm`` task."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MlmParams(BaseModel):
    """``task.params`` for ``mlm``: raw text to continue masked-LM pretraining on."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(
        description="Text to pretrain on: .txt (one document a line) or .jsonl (one object a line)."
    )
    dev_file: str | None = Field(
        None, description="Held-out text for the dev metrics; null = hold out dev_fraction of train_file's documents."
    )
    dev_fraction: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Share of train_file's documents held out as dev when dev_file is null (the same documents in "
        "every run, whatever train.seed).",
    )
    format: Literal["auto", "txt", "jsonl"] = Field("auto", description="File format; auto = from the extension.")
    text_field: str = Field("text", description="jsonl only: the field holding a document's text.")
    masking: Literal["token", "word"] = Field(
        "token",
        description="Masking unit: token (BERT), or word (all tokens of a word together, words from jieba's "
        "segmentation: whole-word masking as Chinese BERT-wwm). Word masking needs a fast tokenizer.",
    )
    mask_probability: float = Field(0.15, gt=0, lt=1, description="Share of the tokens masked (BERT: 0.15).")
    pack: bool = Field(
        True,
        description="Join documents and cut the stream into data.max_length blocks (no padding, nothing cut off); "
        "false = one block per document, truncated to data.max_length.",
    )
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training documents.")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev documents.")
