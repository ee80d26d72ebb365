"""AdapterParams → the peft bottleneck config, and the facts a run reports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit import ApplyContext
from peftkit.kit import PeftMethod, family

DEFAULT_REDUCTION = 16


def targets(p: Any, model_type: str) -> tuple[str, str | None]:
    """(FFN-output regex, attention-output regex or None for pfeiffer) of the projections to adapt."""
    ffn, attn = p.ffn_modules, p.attn_modules
    if ffn is None or (p.config == "houlsby" and attn is None):
        fam = family(model_type)
        ffn = ffn or fam.ffn  # the FFN output projection (BERT output.dense, Llama mlp.down_proj)
        # attn_out names the attention-output block; its projection is `dense` (BERT) or `o_proj` (decoders)
        attn = attn or fam.attn_out + r"\.(?:dense|o_proj)"
    return ffn, (attn if p.config == "houlsby" else None)


def make_config(p: Any, ctx: ApplyContext) -> Any:
    from peft import TaskType

    from peftkit_plugins.adapters.tuner import BottleneckConfig, register

    register()
    ffn, attn = targets(p, ctx.model_type)
    return BottleneckConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=f"(?:{ffn})|(?:{attn})" if attn else ffn,
        bottleneck_size=p.bottleneck_size,
        reduction_factor=p.reduction_factor or DEFAULT_REDUCTION,
        non_linearity=p.non_linearity,
        dropout=p.dropout,
        scaling=p.scaling,
        init_std=p.init_std,
        placement=p.config,
        attn_modules=attn,
    )


def facts(model: Any) -> dict[str, Any]:
    """Bottleneck width, placement and how many projections carry an adapter."""
    from peftkit_plugins.adapters.tuner import BottleneckLayer

    cfg = next(iter(getattr(model, "peft_config", {}).values()), None)
    attn_re = getattr(cfg, "attn_modules", None)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, BottleneckLayer)]
    widths = sorted({d.out_features for _, m in layers for d in m.bottleneck_down.values()})
    hidden = sorted({m.out_features for _, m in layers})
    after_attn = sum(1 for n, _ in layers if attn_re and re.fullmatch(attn_re, n.removeprefix("base_model.model.")))
    return {
        "placement": getattr(cfg, "placement", None),
        "bottleneck_size": widths[0] if len(widths) == 1 else widths,
        "hidden_size": hidden[0] if len(hidden) == 1 else hidden,
        "non_linearity": getattr(cfg, "non_linearity", None),
        "adapters": len(layers),
        "after_attention": after_attn,
        "after_ffn": len(layers) - after_attn,
    }


@dataclass
class AdaptersMethod(PeftMethod):
    """PeftMethod that registers the bottleneck tuner with peft before a saved adapter is loaded."""

    def load(self, base: Any, directory: Path) -> Any:
        from peftkit_plugins.adapters.tuner import register

        register()
        return super().load(base, directory)
