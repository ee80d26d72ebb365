"""``method.params`` for ``bitfit``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BitFitParams(BaseModel):
    """``method.params`` for ``bitfit``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    include_layernorm: bool = Field(
        True,
        description="Train LayerNorm biases too (BitFit trains every bias term; false = linear-layer biases only).",
    )
