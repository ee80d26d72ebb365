"""IA3Params → peft IA3Config: (IA)³ rescales keys, values and FFN activations with learned vectors."""

from __future__ import annotations

from typing import Any

from peftkit import ApplyContext
from peftkit.kit import family


def default_targets(model_type: str) -> tuple[str, str]:
    """(target regex, feed-forward regex): k and v projections + the FFN output projection."""
    fam = family(model_type)
    # the attention pattern matches q|k|v; the look-behinds drop the query projection, which (IA)³ leaves alone
    kv = f"(?:{fam.attention})(?<!query)(?<!q_proj)"
    return f"{kv}|(?:{fam.ffn})", fam.ffn


def make_config(p: Any, ctx: ApplyContext) -> Any:
    from peft import IA3Config, TaskType

    if p.target_modules is None:
        targets, ffn = default_targets(ctx.model_type)
        ffn = p.feedforward_modules if p.feedforward_modules is not None else ffn
    else:
        targets, ffn = p.target_modules, p.feedforward_modules or []
    return IA3Config(
        task_type=TaskType.SEQ_CLS,
        target_modules=targets,
        feedforward_modules=ffn,
        init_ia3_weights=p.init_ia3_weights,
    )


def facts(model: Any) -> dict[str, Any]:
    """How many activations are rescaled, split into attention (k/v) and feed-forward."""
    from peft.tuners.ia3 import IA3Layer

    layers = [m for m in model.modules() if isinstance(m, IA3Layer)]
    ffn = sum(1 for m in layers if m.is_feedforward)
    return {"scaled_modules": len(layers), "feedforward": ffn, "attention": len(layers) - ffn}
