"""``method.params`` for ``ia3``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class IA3Params(BaseModel):
    """``method.params`` for ``ia3``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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

    @field_validator("target_modules", "feedforward_modules")
    @classmethod
    def _some_targets(cls, v: list[str] | str | None) -> list[str] | str | None:
        if v is not None and len(v) == 0:  # peft would adapt nothing, or fail on the first matching layer
            raise ValueError("must name at least one module, or be null for the default set")
        return v

    @model_validator(mode="after")
    def _feedforward_among_targets(self) -> IA3Params:
        """peft scales a feed-forward module's input only if it is also a target (its own rule for two lists)."""
        targets, ffn = self.target_modules, self.feedforward_modules
        if not (isinstance(targets, list) and isinstance(ffn, list)):
            return self  # the default targets depend on the model; a regex matches full module names
        outside = [m for m in ffn if m not in targets]
        if outside:
            raise ValueError(
                f"feedforward_modules {outside} are not among target_modules {targets}; add them to target_modules"
            )
        return self
