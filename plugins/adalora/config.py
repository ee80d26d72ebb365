"""``method.params`` for ``adalora``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AdaLoraParams(BaseModel):
    """``method.params`` for ``adalora``. Step counts left null are derived from the run's real optimizer steps."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    init_r: int = Field(12, gt=0, description="Starting rank of every adapted matrix (pruned down during training).")
    target_r: int = Field(
        8, gt=0, description="Average rank left after pruning: the final budget is target_r × adapted matrices."
    )
    alpha: float = Field(16, gt=0, description="Scaling numerator: the update is scaled by alpha/init_r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | str | None = Field(
        None,
        description="Module names (suffixes) or one full-match regex. null = every linear layer in the transformer "
        "blocks; `attention` = q/k/v only.",
    )
    total_step: int | None = Field(
        None,
        gt=0,
        description="Optimizer steps of the run. null (recommended) = derived from epochs, dataset size, "
        "batch size and grad_accum, so the schedule always fits the run.",
    )
    tinit: int | None = Field(
        None, ge=0, description="Warm-up steps before any pruning. null = 10% of the total steps."
    )
    tfinal: int | None = Field(
        None, ge=0, description="Final steps that train the fixed, pruned rank pattern. null = 30% of the total steps."
    )
    deltaT: int | None = Field(
        None, gt=0, description="Steps between two budget re-allocations. null = the pruning phase / 100 (at least 1)."
    )
    beta1: float = Field(0.85, gt=0, lt=1, description="EMA factor of the importance (sensitivity) estimate.")
    beta2: float = Field(0.85, gt=0, lt=1, description="EMA factor of the importance uncertainty estimate.")
    orth_reg_weight: float = Field(
        0.5,
        ge=0,
        description="Weight of the orthogonality regulariser on P and Q, added to the training loss (0 = off).",
    )

    @model_validator(mode="after")
    def _ranks(self) -> AdaLoraParams:
        if self.target_r > self.init_r:
            raise ValueError(
                f"target_r ({self.target_r}) must not exceed init_r ({self.init_r}): AdaLoRA only prunes ranks"
            )
        return self

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, v: list[str] | str | None) -> list[str] | str | None:
        if v is not None and len(v) == 0:  # peft would adapt nothing, or fail on the first matching layer
            raise ValueError("must name at least one module, or be null for the default set")
        return v
