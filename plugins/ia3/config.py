"""``method.params`` for ``ia3``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IA3Params(BaseModel):
    """``method.params`` for ``ia3``."""

    model_config = ConfigDict(extra="forbid")

    target_modules: list[str] | str | None = Field(
        None,
        description="Modules whose activations get a learned scaling vector (names/suffixes or one full-match regex). "
        "null = keys, values and the FFN output projection's input, as in (IA)³ (Liu et al., 2022).",
    )
    feedforward_modules: list[str] | str | None = Field(
        None,
        description="Which of target_modules are feed-forward layers (their INPUT is scaled instead of their output). "
        "null with target_modules null = the FFN output projection; null with explicit target_modules = none.",
    )
    init_ia3_weights: bool = Field(
        True, description="Start the scaling vectors at 1 (the model starts equal to the base)."
    )
