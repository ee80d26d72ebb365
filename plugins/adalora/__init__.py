"""AdaLoRA (Zhang et al., 2023) through peft: SVD-form LoRA whose rank budget is re-allocated while training.

The budget update runs in this plugin's own ``peftkit_on_step_end`` hook, which the runner fires after
``optimizer.step()`` and before ``zero_grad()`` — where ``update_and_allocate`` needs the gradients.
"""

from typing import Any

from peftkit import PeftkitError, hookimpl
from peftkit_plugins.adalora.config import AdaLoraParams
from peftkit_plugins.adalora.method import STEP_ATTR, AdaLoraMethod, facts, make_config


@hookimpl
def peftkit_register_methods():
    return [
        AdaLoraMethod(
            name="adalora",
            summary="AdaLoRA: LoRA in SVD form whose rank budget moves to the most important matrices; schedule derived from the run.",
            params_model=AdaLoraParams,
            make_config=make_config,
            # As LoRA (the paper tunes 5e-4..1.2e-3 over many epochs). Short runs need more: the singular values
            # start at 0 and P, Q at N(0, 0.02), so early updates are far smaller than LoRA's. Measured on TNEWS
            # with 63 steps: 11.0% (majority class) at 1e-3, 51.4% at 5e-3.
            default_lr=1e-3,
            facts_fn=facts,
        )
    ]


def _adalora(state: Any) -> bool:
    return getattr(state.method, "name", None) == "adalora"


@hookimpl
def peftkit_on_step_end(state: Any) -> None:
    """Update importance scores and re-allocate the rank budget after every optimizer step."""
    if not _adalora(state):
        return
    state.model.base_model.update_and_allocate(state.step)
    setattr(state.model, STEP_ATTR, state.step)


_ESTIMATES = ("ipt", "exp_avg_ipt", "exp_avg_unc")


@hookimpl
def peftkit_on_save_checkpoint(state: Any, extra: dict[str, Any]) -> None:
    """peft's RankAllocator keeps its importance estimates, and the config the rank pattern, outside the
    parameters: save both so that a resumed run allocates exactly as the uninterrupted one."""
    if not _adalora(state):
        return
    tuner = state.model.base_model
    alloc = tuner.rankallocator
    extra["adalora"] = {
        "rank_pattern": tuner.peft_config[tuner.trainable_adapter_name].rank_pattern,
        "step": getattr(state.model, STEP_ATTR, 0),
        **{key: {n: t.detach().cpu() for n, t in getattr(alloc, key).items()} for key in _ESTIMATES},
    }


@hookimpl
def peftkit_on_load_checkpoint(state: Any, extra: dict[str, Any]) -> None:
    if not _adalora(state):
        return
    tuner = state.model.base_model
    cfg = tuner.peft_config[tuner.trainable_adapter_name]
    saved = extra.get("adalora")
    if saved is None:
        if state.step >= cfg.total_step - cfg.tfinal:
            raise PeftkitError(
                f"--resume: the checkpoint at step {state.step} holds no AdaLoRA rank pattern (written by an older "
                f"peftkit) and the run is in its final phase (after step {cfg.total_step - cfg.tfinal}), which needs "
                "it; start the run again without --resume"
            )
        return  # older checkpoint before the final phase: allocation restarts from fresh estimates
    device = next(p for p in state.model.parameters() if p.requires_grad).device
    for key in _ESTIMATES:
        setattr(tuner.rankallocator, key, {n: t.to(device) for n, t in saved[key].items()})
    cfg.rank_pattern = saved["rank_pattern"]
    setattr(state.model, STEP_ATTR, saved["step"])
