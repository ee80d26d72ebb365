"""``method.params`` for ``full`` fine-tuning."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FullParams(BaseModel):
    """``method.params`` for ``full``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    freeze_embeddings: bool = Field(
        False,
        description="Keep the input embeddings frozen. For multilingual models most parameters are the vocabulary "
        "embeddings (96M of multilingual-e5-small's 118M); freezing them saves optimizer memory at little cost.",
    )
