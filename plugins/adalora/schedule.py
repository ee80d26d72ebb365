"""AdaLoRA's three-phase step schedule, derived from the run's real number of optimizer steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TINIT_SHARE = 0.1  # warm-up before pruning: importance scores need some training signal first
TFINAL_SHARE = 0.3  # train the final rank pattern long enough to recover from the last pruning
REALLOCATIONS = 100  # budget updates spread over the pruning phase


@dataclass(frozen=True)
class Schedule:
    """Steps of the three phases: warm-up (tinit), pruning, final (tfinal)."""

    total_step: int
    tinit: int
    tfinal: int
    deltaT: int

    def as_dict(self) -> dict[str, int]:
        return {"total_step": self.total_step, "tinit": self.tinit, "tfinal": self.tfinal, "deltaT": self.deltaT}


def derive(p: Any, total: int, source: str) -> Schedule | str:
    """The schedule for ``total`` optimizer steps, or a message saying why it is impossible.

    Args:
        p: validated AdaLoraParams (given tinit/tfinal/deltaT win over derived ones).
        total: optimizer steps of the run.
        source: where ``total`` came from, for the message (``train.max_steps``, ...).
    """
    tinit = p.tinit if p.tinit is not None else int(TINIT_SHARE * total)
    tfinal = p.tfinal if p.tfinal is not None else int(TFINAL_SHARE * total)
    if tinit + tfinal >= total:
        return (
            f"AdaLoRA needs a pruning phase, but tinit ({tinit}) + tfinal ({tfinal}) = {tinit + tfinal} is not below the "
            f"run's {total} optimizer steps ({source}). Lower method.params.tinit / method.params.tfinal (or leave them "
            "null to derive them), or train longer (train.epochs / train.max_steps)"
        )
    deltaT = p.deltaT if p.deltaT is not None else max(1, (total - tinit - tfinal) // REALLOCATIONS)
    return Schedule(total_step=total, tinit=tinit, tfinal=tfinal, deltaT=deltaT)


def check(p: Any, recipe_data: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate-time refusal when the step count is known without data (total_step or train.max_steps)."""
    train = recipe_data.get("train") if isinstance(recipe_data.get("train"), dict) else {}
    if p.total_step is not None:
        total, source = p.total_step, "method.params.total_step"
    elif isinstance(train.get("max_steps"), int) and train["max_steps"] > 0:
        total, source = train["max_steps"], "train.max_steps"
    else:
        return []  # derived from the dataset size at run time; apply() refuses then, with the same message
    out = derive(p, total, source)
    if isinstance(out, str):
        key = "method.params.tinit" if p.tinit is not None else "method.params.tfinal"
        return [(key, out)]
    return []
