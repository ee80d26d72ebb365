"""``method.params`` for ``adapters`` (bottleneck adapters)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MERGE_NOTE = (
    "A bottleneck adapter is non-linear (down-projection → activation → up-projection), so it cannot be folded "
    "into the base weights; keep the base + adapter, or train lora/ia3 if you need a merged model."
)


class AdapterParams(BaseModel):
    """``method.params`` for ``adapters``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    config: Literal["houlsby", "pfeiffer"] = Field(
        "pfeiffer",
        description="Placement. houlsby: after the attention output projection AND after the FFN output projection "
        "(Houlsby et al., 2019); pfeiffer: after the FFN output projection only (Pfeiffer et al., 2021; half the "
        "parameters, usually as accurate).",
    )
    reduction_factor: int | None = Field(
        None,
        gt=0,
        description="Bottleneck = hidden size / reduction_factor (16 when neither this nor bottleneck_size is set). "
        "Smaller = wider adapter, more parameters.",
    )
    bottleneck_size: int | None = Field(
        None, gt=0, description="Bottleneck width in units; alternative to reduction_factor."
    )
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = Field(
        "relu", description="Activation inside the adapter."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    scaling: float = Field(1.0, gt=0, description="Multiplier on the adapter output.")
    init_std: float = Field(
        1e-2,
        gt=0,
        description="Std of the down-projection init. The up-projection starts at zero, so the adapted model "
        "starts exactly equal to the base (near-identity init).",
    )
    attn_modules: str | None = Field(
        None,
        description="Full-match regex of the attention output projections (houlsby only). null = the architecture's "
        "default (BERT `attention.output.dense`, Llama/Qwen/Gemma `self_attn.o_proj`).",
    )
    ffn_modules: str | None = Field(
        None,
        description="Full-match regex of the FFN output projections. null = the architecture's default "
        "(BERT `output.dense`, Llama/Qwen/Gemma `mlp.down_proj`).",
    )

    @model_validator(mode="after")
    def _one_size(self) -> AdapterParams:
        if self.reduction_factor is not None and self.bottleneck_size is not None:
            raise ValueError(
                f"set either reduction_factor ({self.reduction_factor}) or bottleneck_size ({self.bottleneck_size}), not both"
            )
        return self
