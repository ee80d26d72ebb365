"""hello/keywords: binary sentiment of generated sentences, decided by which keyword they contain.

The data is generated from a seed, so the task needs no files and no network: handy for trying a
method end to end in seconds. Each sentence mixes filler words with exactly one keyword; the label is
``pos`` when the keyword is positive. The test split is unlabelled, like a real benchmark's.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from peftkit import Example

LABELS = ["neg", "pos"]


class KeywordParams(BaseModel):
    """``task.params`` for ``hello/keywords``."""

    model_config = ConfigDict(extra="forbid")

    positive: list[str] = Field(
        ["good", "great", "fine", "nice"], min_length=1, description="Words that make a sentence positive."
    )
    negative: list[str] = Field(
        ["bad", "awful", "poor", "sad"], min_length=1, description="Words that make a sentence negative."
    )
    filler: list[str] = Field(
        ["the", "a", "movie", "food", "day", "was", "is", "very"],
        min_length=3,
        description="Neutral words the sentences are built from (at least 3).",
    )
    train_size: int = Field(256, gt=0, description="Training sentences to generate.")
    dev_size: int = Field(64, gt=0, description="Dev sentences (labelled; used for evaluation).")
    test_size: int = Field(32, gt=0, description="Test sentences (unlabelled; `peftkit predict` writes their labels).")
    seed: int = Field(0, ge=0, description="Seed of the generator; each split uses its own stream.")

    @model_validator(mode="after")
    def _disjoint(self) -> KeywordParams:
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"words {both} are both positive and negative; a word must be in one list only")
        return self


def sentences(params: KeywordParams, split: str) -> list[tuple[str, str]]:
    """``(text, label)`` pairs of a split, the same for the same params and split."""
    n = {"train": params.train_size, "dev": params.dev_size, "test": params.test_size}[split]
    rng = random.Random(f"{params.seed}:{split}")  # a string seed is stable across Python versions
    out = []
    for i in range(n):
        label = LABELS[i % 2]
        keyword = rng.choice(params.positive if label == "pos" else params.negative)
        words = rng.sample(params.filler, 3) + [keyword]
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


class KeywordTask:
    """The Task object peftkit calls; see :class:`peftkit.plugin.contracts.Task`."""

    name = "hello/keywords"
    summary = "Keyword sentiment on generated sentences: no files, no network (example plugin)."
    params_model = KeywordParams
    metric = "accuracy"
    splits = ("train", "dev", "test")

    def label_names(self, params: KeywordParams) -> list[str]:
        return list(LABELS)

    def load_split(self, params: KeywordParams, split: str) -> list[Example]:
        labelled = split != "test"
        return [
            Example(text, label=LABELS.index(label) if labelled else None, id=i)
            for i, (text, label) in enumerate(sentences(params, split))
        ]

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        from peftkit.kit import classification_metrics

        return classification_metrics(predictions, references, num_labels=len(LABELS))

    def prediction_file(self, params: KeywordParams) -> str:
        return "keywords_predict.jsonl"

    def format_prediction(self, example: Example, label_id: int, params: KeywordParams) -> dict[str, Any]:
        return {"id": example.id, "label": LABELS[label_id]}
