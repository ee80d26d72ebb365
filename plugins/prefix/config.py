"""``method.params`` for ``prefix`` tuning."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PrefixParams(BaseModel):
    """``method.params`` for ``prefix``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num_virtual_tokens: int = Field(
        20,
        gt=0,
        le=512,
        description="Prefix length: learned key/value vectors prepended in every layer. "
        "Longer = more capacity, slower attention.",
    )
    prefix_projection: bool = Field(
        False,
        description="Reparameterise the prefix through a 2-layer MLP while training (Li & Liang, 2021): "
        "more stable, many more trainable parameters; the saved prefix is the MLP's output.",
    )
    encoder_hidden_size: int | None = Field(
        None,
        gt=0,
        description="Hidden size of the reparameterisation MLP (prefix_projection only); null = model hidden size.",
    )
