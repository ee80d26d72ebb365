"""Turn LoraParams into a peft LoraConfig."""

from typing import Any

from peftkit import ApplyContext
from peftkit.kit import resolve_targets


def make_config(p: Any, ctx: ApplyContext) -> Any:
    from peft import LoraConfig, TaskType

    init = {"default": True}.get(p.init, p.init)
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=resolve_targets(p.target_modules, ctx.model_type),
        bias=p.bias,
        use_dora=p.use_dora,
        use_rslora=p.use_rslora,
        init_lora_weights=init,
    )
