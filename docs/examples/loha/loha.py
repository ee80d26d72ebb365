"""LoHa (Hadamard product of two low-rank matrices) as a peftkit method, built on peft's LoHaConfig."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peftkit import ApplyContext
from peftkit.kit import PeftMethod, resolve_targets


class LoHaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, gt=0, description="Rank of each of the two low-rank factors.")
    alpha: float = Field(8, gt=0, description="Scaling numerator: the update is scaled by alpha/r.")
    target_modules: list[str] | str = Field(
        "attention", description="`attention` (q/k/v), `all-linear`, module-name suffixes, or one full-match regex."
    )


def make_config(p: LoHaParams, ctx: ApplyContext) -> Any:
    from peft import LoHaConfig, TaskType  # here, not at the top: `peftkit validate` stays fast

    # resolve_targets turns "attention" into this architecture's q/k/v names: query/key/value on BERT,
    # q_proj/k_proj/v_proj on Llama. A hard-coded ["query", "value"] would match nothing on a Llama.
    targets = resolve_targets(p.target_modules, ctx.model_type)
    return LoHaConfig(task_type=TaskType.SEQ_CLS, r=p.r, alpha=p.alpha, target_modules=targets)


METHOD = PeftMethod(
    name="loha",
    summary="LoHa: Hadamard product of low-rank matrices.",
    params_model=LoHaParams,
    make_config=make_config,
    default_lr=1e-3,
    quantized_bits=frozenset(),  # peft's LoHa layers wrap plain nn.Linear only, not 4/8-bit ones
)
