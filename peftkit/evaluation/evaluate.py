"""Batched, gradient-free evaluation and prediction (length-sorted batches, original order restored)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from peftkit.build.batches import collate, eval_batches
from peftkit.evaluation.prepack import packed_linears

if TYPE_CHECKING:
    import numpy as np

HALF_PRECISION_EVAL_BATCH = 4


def eval_batch_size(recipe: Any) -> int:
    """``eval.batch_size``, or when unset ``train.batch_size`` (float32) or 4 × ``train.batch_size`` (bf16/fp16).

    Measured on TNEWS dev with length-sorted batches on a 2-core AVX512-BF16 CPU: float32 runs at its
    peak from batch 32 (32: 169, 64: 166, 128: 157 samples/s), bf16 needs bigger matrices (32: 236,
    128: 263-299, 512: 226). Evaluation keeps no activations for backward, so 4× fits where training fits.
    """
    if recipe.eval.batch_size:
        return recipe.eval.batch_size
    half = mixed_precision(recipe) != "no"
    return recipe.train.batch_size * (HALF_PRECISION_EVAL_BATCH if half else 1)


def mixed_precision(recipe: Any) -> str:
    """``train.mixed_precision`` with ``auto`` resolved: ``bf16`` on GPUs that support it, else ``no``.

    Training and every evaluation of the run (in-loop, final, ``peftkit predict``) use the same value.
    """
    import torch

    mp = recipe.train.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if recipe.model.quantization is not None and mp == "fp16":
        mp = "no"  # bitsandbytes layers already compute in bnb_4bit_compute_dtype
    return mp


def autocast(device: Any, precision: str) -> Any:
    """The autocast context for ``precision`` (``no``, ``bf16``, ``fp16``) on ``device``, as Accelerate sets it
    for training."""
    if precision == "no":
        return contextlib.nullcontext()
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def forward_batches(
    model: Any, data: Any, batch_size: int, pad_id: int, device: Any, precision: str = "no"
) -> Iterator[tuple[list[int], dict[str, Any], Any]]:
    """``(row indices, batch on device, float32 logits)`` for every length-sorted evaluation batch of ``data``, the
    model in eval mode under ``inference_mode`` (and autocast for ``precision``: ``no``, ``bf16``, ``fp16``, as in
    training). In float32 on CPU the linear layers run with oneDNN-prepacked weights (``peftkit.evaluation.prepack``).
    What the logits mean is the objective's business (:meth:`peftkit.plugin.contracts.Objective.score`)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, precision), packed_linears(model, device, precision):
            for idx in eval_batches(data.lengths, batch_size):
                batch = {k: v.to(device) for k, v in collate(data, idx, pad_id).items()}
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                yield idx, batch, model(**inputs).logits.float()
    finally:
        model.train(was_training)


def row_logits(outputs: Iterable[tuple[list[int], dict[str, Any], Any]], n: int) -> tuple[np.ndarray, float | None]:
    """One logit vector per row (``n`` rows, restored to data order) from :func:`forward_batches`, and the mean
    cross-entropy against the batches' ``labels`` when every row has one: what an objective with one label per row
    scores with."""
    import numpy as np
    import torch

    out: np.ndarray | None = None
    loss_sum, n_loss = 0.0, 0
    for idx, batch, logits in outputs:
        labels = batch.get("labels")
        if labels is not None:
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            n_loss += len(idx)
        if out is None:
            out = np.zeros((n, logits.shape[-1]), dtype=np.float32)
        out[idx] = logits.cpu().numpy()
    return out, (loss_sum / n_loss if n_loss == n else None)


def predict_logits(
    model: Any, data: Any, batch_size: int, pad_id: int, device: Any, precision: str = "no"
) -> tuple[np.ndarray, float | None]:
    """Logits for every example in ``data`` order, and the mean loss when all rows are labelled (an objective with
    one label per row; see :func:`forward_batches` for ``precision``)."""
    return row_logits(forward_batches(model, data, batch_size, pad_id, device, precision), len(data))


def objective_of(data: Any) -> Any:
    """The Objective that encoded ``data`` (the default objective for a split built by hand, as in tests)."""
    from peftkit.build.model import objective_named

    return objective_named(getattr(data, "objective", None))


def evaluate(
    model: Any, data: Any, task: Any, batch_size: int, pad_id: int, device: Any, precision: str = "no"
) -> tuple[dict[str, float], np.ndarray]:
    """The task's metrics (plus ``eval_loss`` and the objective's own) on a labelled split, and the predictions
    (label ids per row for a classification objective), scored by the split's objective: through its own
    ``evaluate`` when it has one (generation, per-candidate scoring), else its ``score`` of :func:`forward_batches`."""
    objective = objective_of(data)
    own = getattr(objective, "evaluate", None)
    if own is not None:
        return own(model, data, task, batch_size=batch_size, pad_id=pad_id, device=device, precision=precision)
    return objective.score(forward_batches(model, data, batch_size, pad_id, device, precision), data, task)


def scores(task: Any, preds: np.ndarray, labels: np.ndarray, loss: float | None) -> dict[str, float]:
    """The task's metrics of ``preds`` against ``labels``, plus ``eval_loss`` when there is one."""
    metrics = dict(task.compute_metrics(preds, labels))
    if loss is not None:
        metrics["eval_loss"] = loss
    return metrics
