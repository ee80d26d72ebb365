from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LoraParams(BaseModel):
    """``method.params`` for ``lora``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    r: int = Field(8, gt=0, description="Rank of the update. Higher = more capacity and parameters; 8–16 is typical.")
    alpha: float = Field(
        16, gt=0, description="Scaling numerator: the update is scaled by alpha/r (alpha/sqrt(r) with rslora)."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | str | None = Field(
        None,
        description="Module names (suffixes) or one full-match regex. null = every linear layer in the transformer blocks "
        "(measured better than query/value only on TNEWS); `attention` = q/k/v only.",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train as well.")
    use_dora: bool = Field(
        False, description="DoRA: learn magnitude and direction separately (slower, sometimes better at low r)."
    )
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r), stabler at high r.")
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default",
        description="Initialisation: default (B=0, Kaiming A), gaussian, pissa (principal singular vectors), olora (QR).",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, v: list[str] | str | None) -> list[str] | str | None:
        if v is not None and len(v) == 0:  # peft would adapt nothing, or fail on the first matching layer
            raise ValueError("must name at least one module, or be null for the default set")
        return v
