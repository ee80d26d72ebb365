"""AdaLoRA's rank-budget schedule, as lifecycle hooks of the method itself (``AdaLoraMethod.hooks``).

A run registers a method's ``hooks`` object only while it trains that method, so these fire in AdaLoRA runs and
no others (the rule is in the docs' Hooks reference).
"""

from __future__ import annotations

from typing import Any

from peftkit import PeftkitError, hookimpl
from peftkit_plugins.adalora.method import STEP_ATTR

_ESTIMATES = ("ipt", "exp_avg_ipt", "exp_avg_unc")


class BudgetSchedule:
    """Re-allocates the rank budget after every optimizer step, and saves/restores what that needs to resume."""

    @hookimpl
    def peftkit_on_step_end(self, state: Any) -> None:
        """Update importance scores and re-allocate the rank budget. Runs after ``optimizer.step()`` and before
        ``zero_grad()``, where ``update_and_allocate`` needs the gradients."""
        state.model.base_model.update_and_allocate(state.step)
        setattr(state.model, STEP_ATTR, state.step)

    @hookimpl
    def peftkit_on_save_checkpoint(self, state: Any, extra: dict[str, Any]) -> None:
        """peft's RankAllocator keeps its importance estimates, and the config the rank pattern, outside the
        parameters: save both so that a resumed run allocates exactly as the uninterrupted one."""
        tuner = state.model.base_model
        alloc = tuner.rankallocator
        extra["adalora"] = {
            "rank_pattern": tuner.peft_config[tuner.trainable_adapter_name].rank_pattern,
            "step": getattr(state.model, STEP_ATTR, 0),
            **{key: {n: t.detach().cpu() for n, t in getattr(alloc, key).items()} for key in _ESTIMATES},
        }

    @hookimpl
    def peftkit_on_load_checkpoint(self, state: Any, extra: dict[str, Any]) -> None:
        tuner = state.model.base_model
        cfg = tuner.peft_config[tuner.trainable_adapter_name]
        saved = extra.get("adalora")
        if saved is None:
            if state.step >= cfg.total_step - cfg.tfinal:
                raise PeftkitError(
                    f"--resume: the checkpoint at step {state.step} holds no AdaLoRA rank pattern (written by an "
                    f"older peftkit) and the run is in its final phase (after step {cfg.total_step - cfg.tfinal}), "
                    "which needs it; start the run again without --resume"
                )
            return  # older checkpoint before the final phase: allocation restarts from fresh estimates
        device = next(p for p in state.model.parameters() if p.requires_grad).device
        for key in _ESTIMATES:
            setattr(tuner.rankallocator, key, {n: t.to(device) for n, t in saved[key].items()})
        cfg.rank_pattern = saved["rank_pattern"]
        setattr(state.model, STEP_ATTR, saved["step"])
