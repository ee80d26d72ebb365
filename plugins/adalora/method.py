"""AdaLoraParams → peft AdaLoraConfig; saving that always reloads exactly; rank facts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit import ApplyContext, PeftkitError
from peftkit.kit import PeftMethod, resolve_targets
from peftkit_plugins.adalora.schedule import check, derive

log = logging.getLogger("peftkit")
STEP_ATTR = "_peftkit_adalora_step"  # last step update_and_allocate ran for (set by the step hook)


def make_config(p: Any, ctx: ApplyContext) -> Any:
    from peft import AdaLoraConfig, TaskType

    if p.total_step is not None:
        total, source = p.total_step, "method.params.total_step"
        if ctx.total_steps and ctx.total_steps != p.total_step:
            log.warning(
                "adalora: method.params.total_step=%d but the run takes %d optimizer steps; the final rank "
                "pattern is fixed at step total_step - tfinal. Leave total_step null to derive it",
                p.total_step,
                ctx.total_steps,
            )
    elif ctx.total_steps > 0:
        total, source = ctx.total_steps, "derived from epochs, dataset size, batch_size and grad_accum"
    else:
        raise PeftkitError(
            "method 'adalora' needs the number of optimizer steps and none is known here; set method.params.total_step"
        )
    sched = derive(p, total, source)
    if isinstance(sched, str):
        raise PeftkitError(sched)
    log.info("adalora schedule: %s", sched.as_dict())
    return AdaLoraConfig(
        task_type=TaskType.SEQ_CLS,
        init_r=p.init_r,
        target_r=p.target_r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=resolve_targets(p.target_modules, ctx.model_type),
        beta1=p.beta1,
        beta2=p.beta2,
        orth_reg_weight=p.orth_reg_weight,
        **sched.as_dict(),
    )


def _e_tensors(model: Any) -> dict[str, Any]:
    """``{short module name: lora_E}`` of every AdaLoRA layer (the singular values; zero = pruned)."""
    out = {}
    for name, p in model.named_parameters():
        if ".lora_E." in name:
            short = name.split(".lora_E.")[0].removeprefix("base_model.model.")
            out[short] = p
    return out


def _pattern_holds(model: Any, pattern: dict[str, list[bool]]) -> bool:
    """True when every singular value the pattern prunes is exactly zero, so a pruned save loses nothing."""
    import torch

    adapter = model.active_adapter
    # peft keys the pattern by names inside the wrapped transformers model, with or without the adapter name
    for name, p in model.base_model.model.named_parameters():
        if f"lora_E.{adapter}" not in name:
            continue
        keep = pattern.get(name, pattern.get(name.replace(f".{adapter}", "")))
        if keep is None:
            return False
        if (p.detach().view(-1)[~torch.tensor(keep, dtype=torch.bool, device=p.device)] != 0).any():
            return False
    return True


def facts(model: Any) -> dict[str, Any]:
    """Rank pattern (ranks still alive per matrix), total rank against the budget, schedule, phase."""
    cfg = model.peft_config[model.active_adapter]
    ranks = {k: int((e.detach() != 0).sum()) for k, e in _e_tensors(model).items()}
    step = getattr(model, STEP_ATTR, 0)
    return {
        "final_ranks": ranks,
        "total_rank": sum(ranks.values()),
        "budget": {"init_total_rank": cfg.init_r * len(ranks), "target_total_rank": cfg.target_r * len(ranks)},
        "schedule": {"total_step": cfg.total_step, "tinit": cfg.tinit, "tfinal": cfg.tfinal, "deltaT": cfg.deltaT},
        "last_allocation_step": step,
        "rank_pattern_final": bool(step and step >= cfg.total_step - cfg.tfinal),
    }


@dataclass
class AdaLoraMethod(PeftMethod):
    """PeftMethod with AdaLoRA's validate-time schedule check, an exact save, and its budget schedule as the
    method's own lifecycle hooks (``hooks``: registered only for the runs of this method)."""

    hooks: Any = None

    def check(self, params: Any, recipe_data: dict[str, Any]) -> list[tuple[str, str]]:
        return check(params, recipe_data)

    def save(self, model: Any, directory: Path) -> None:
        # peft drops pruned ranks from the file according to config.rank_pattern. Between two re-allocations
        # the optimizer can revive a pruned singular value, and dropping it would change the reloaded model;
        # then save every rank instead (the file is larger, the reload exact).
        cfg = model.peft_config[model.active_adapter]
        pattern = cfg.rank_pattern
        if pattern and not _pattern_holds(model, pattern):
            cfg.rank_pattern = None
        try:
            super().save(model, directory)
        finally:
            cfg.rank_pattern = pattern

    def load(self, base: Any, directory: Path) -> Any:
        import warnings

        with warnings.catch_warnings():
            # peft shares LoRA's rank_pattern field and warns that AdaLoRA's pattern keys "match no module";
            # it then applies the pattern correctly when loading the weights
            warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
            return super().load(base, directory)
