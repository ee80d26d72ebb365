"""The parts a training run is assembled from: the accelerator, the optimizer, the scheduler, the step plan."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from peftkit.build.batches import steps_per_epoch
from peftkit.build.model import warn_if_bf16_emulated
from peftkit.evaluation.evaluate import mixed_precision
from peftkit.recipe import Recipe

log = logging.getLogger("peftkit")


def make_accelerator(recipe: Recipe) -> Any:
    """An ``accelerate.Accelerator`` for the recipe's mixed precision (and ``train.compile``)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mp = mixed_precision(recipe)
    if mp == "bf16":
        warn_if_bf16_emulated("train.mixed_precision=bf16", "train.mixed_precision: no")
    # One process may run several recipes (the Python API, tests): Accelerate keeps mixed precision in a
    # process-wide singleton that refuses a second value, so start each run from a fresh one. The process
    # group (PartialState) is kept.
    AcceleratorState._reset_state()
    kwargs: dict[str, Any] = {}
    if recipe.train.compile:
        from accelerate.utils import TorchDynamoPlugin

        # Regional compilation: the repeated blocks share one compiled graph, so compiling takes about as long
        # as for one block (measured on e5-small: 54 s against 6 min for the whole model on 2 CPU cores).
        kwargs["dynamo_plugin"] = TorchDynamoPlugin(backend="inductor", dynamic=True, use_regional_compilation=True)
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available(), **kwargs)


def in_head(name: str, heads: Sequence[str]) -> bool:
    """Whether parameter ``name`` lies in one of the head modules ``heads`` (``classifier`` holds
    ``classifier.weight`` and, under peft, ``base_model.model.classifier.modules_to_save.default.weight``)."""
    dotted = f".{name}"
    return any(f".{h}." in dotted for h in heads)


def make_optimizer(model: Any, recipe: Recipe, lr: float, heads: Sequence[str] = ()) -> Any:
    """AdamW over the trainable parameters; biases and norms get no weight decay. With ``train.head_lr`` the
    parameters of the head modules ``heads`` (``ApplyContext.head_modules``) train at that rate instead."""
    import torch

    t = recipe.train
    head_lr = t.head_lr if t.head_lr is not None and heads else None
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((head_lr is not None and in_head(name, heads), no_decay), []).append(p)
    if head_lr is not None and not any(head for head, _ in groups):
        log.warning("train.head_lr=%g: no trainable parameter lies in the head modules %s", head_lr, list(heads))
    out = []
    for (head, no_decay), params in sorted(groups.items()):
        group = {"params": params, "weight_decay": 0.0 if no_decay else t.weight_decay}
        if head:
            group["lr"] = head_lr
        out.append(group)
    return torch.optim.AdamW(out, lr=lr, betas=t.adam_betas, eps=t.adam_eps)


def make_scheduler(opt: Any, recipe: Recipe, total: int) -> Any:
    """The learning-rate schedule: ``train.scheduler`` with ``train.warmup`` (a fraction below 1, else steps)."""
    from transformers import get_scheduler

    w = recipe.train.warmup
    warmup = int(round(w * total)) if w < 1 else int(w)
    name = {"constant": "constant_with_warmup"}.get(recipe.train.scheduler, recipe.train.scheduler)
    return get_scheduler(name, opt, num_warmup_steps=min(warmup, total), num_training_steps=total)


def plan_steps(recipe: Recipe, n_train: int, processes: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for this recipe and dataset size."""
    t = recipe.train
    per_epoch = steps_per_epoch(n_train, t.batch_size, t.grad_accum, processes)
    total = t.max_steps or max(1, math.ceil(per_epoch * t.epochs))
    return per_epoch, total


def agree_over_processes(acc: Any, loss: float, stop: bool) -> tuple[float, bool]:
    """The step's loss as the mean over processes (what one process with the global batch would see), and
    whether any process was asked to stop: every process must stop at the same step, or the others would wait
    for it in the next collective forever."""
    if acc.num_processes == 1:
        return loss, stop
    import torch

    both = acc.gather(torch.tensor([loss, float(stop)], device=acc.device)).view(-1, 2)
    return float(both[:, 0].mean()), bool(both[:, 1].max() > 0)
