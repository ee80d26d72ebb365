"""The objective conformance suite (``check_objective``): what the core relies on when it loads, batches and
evaluates through an Objective, on the tiny models.

For each tiny model (the tiny Llama unless the objective is ``encoder_only``, the tiny BERT unless it is
``decoder_only``) it checks that: the
objective's own ``sample_examples`` pass its ``check_rows`` (with the label space ``LABELS``, which an objective
without labels ignores and a token-classification one tags units with); ``encode`` gives a split with one length per row;
``collate`` gives tensors sharing the batch dimension, with ``labels``, the same for the same (epoch, batch) and
seed; the model loads through ``auto_class`` with ``model_kwargs``; a forward pass gives a finite loss whose
gradient reaches the model; ``score`` over the evaluation batches gives finite float metrics with ``eval_loss``
and predictions as a 1-D array of ids (one label id per row, inside the label space, for a ``labelled``
objective); scoring twice gives the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from peftkit.kit.conformance.common import LABELS, ConformanceError, tiny_model_dir

OBJECTIVE_MODELS = ("bert", "llama")


@dataclass
class ObjectiveReport:
    """What one objective conformance run measured."""

    objective: str
    model: str
    rows: int
    sequences: int
    batch_shape: tuple[int, ...]
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class _StandInTask:
    """The task an objective is scored against here: accuracy of predicted ids against the references."""

    name = "conformance"
    metric = "accuracy"

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        import numpy as np

        p, r = np.asarray(predictions), np.asarray(references)
        return {"accuracy": float((p == r).mean()) if len(r) else 0.0}


def _resolve(objective: Any) -> Any:
    from peftkit.plugin.registry import get_registry

    if not isinstance(objective, str):
        return objective
    reg = get_registry()
    if objective not in reg.objectives:
        raise ConformanceError(f"no objective {objective!r} is registered (registered: {', '.join(reg.objectives)})")
    return reg.objectives[objective]


def _encoded(o: Any, tok: Any, rows: list[Any], kind: str, split: str, tag: str) -> Any:
    import numpy as np

    from peftkit.plugin.contracts import EncodeContext

    ctx = EncodeContext(max_length=32, use_token_types=kind == "bert", split=split, seed=0, labels=list(LABELS))
    enc = o.encode(rows, tok, ctx)
    lengths = np.asarray(enc.lengths)
    if len(enc) < 1 or lengths.shape != (len(enc),) or not (lengths > 0).all():
        raise ConformanceError(
            f"{tag} encode() gave {len(enc)} rows with lengths {lengths!r}; need one length > 0 a row"
        )
    enc.objective = o
    return enc


def _check_batch(enc: Any, idx: list[int], pad_id: int, tag: str) -> dict[str, Any]:
    import torch

    from peftkit.build.batches import collate

    batch = collate(enc, idx, pad_id, epoch=1, batch=3)
    again = collate(enc, idx, pad_id, epoch=1, batch=3)
    if "labels" not in batch or "input_ids" not in batch:
        raise ConformanceError(f"{tag} collate() gave {sorted(batch)}; a training batch needs input_ids and labels")
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or value.shape[0] != len(idx):
            raise ConformanceError(f"{tag} collate()[{key!r}] is not a tensor with {len(idx)} rows: {value!r:.80}")
        if not torch.equal(value, again[key]):
            raise ConformanceError(f"{tag} collate()[{key!r}] differs between two calls with the same epoch and batch")
    return batch


def _check_score(o: Any, model: Any, enc: Any, pad_id: int, tag: str) -> dict[str, float]:
    import numpy as np

    from peftkit.evaluation.evaluate import forward_batches

    results = [o.score(forward_batches(model, enc, 3, pad_id, "cpu"), enc, _StandInTask()) for _ in range(2)]
    (metrics, preds), (metrics2, preds2) = results
    bad = {k: v for k, v in metrics.items() if not isinstance(v, float) or not math.isfinite(v)}
    if "eval_loss" not in metrics or bad:
        raise ConformanceError(f"{tag} score() metrics must be finite floats with eval_loss, got {metrics!r}")
    if not isinstance(preds, np.ndarray) or preds.ndim != 1 or not np.issubdtype(preds.dtype, np.integer):
        raise ConformanceError(f"{tag} score() predictions must be a 1-D integer array, got {preds!r:.80}")
    if o.labelled and (len(preds) != len(enc) or preds.min() < 0 or preds.max() >= len(LABELS)):
        raise ConformanceError(f"{tag} a labelled objective predicts one label id per row: {len(preds)} for {len(enc)}")
    if metrics != metrics2 or not np.array_equal(preds, preds2):
        raise ConformanceError(f"{tag} score() gave different results twice on the same model and data")
    return metrics


def run_objective(objective: Any, model: str = "bert") -> ObjectiveReport:
    """Every check for one objective on one tiny model (``bert`` or ``llama``)."""
    import torch

    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.recipe import ModelConfig

    o = _resolve(objective)
    tag = f"[objective {o.name} on tiny {model}]"
    sample = getattr(o, "sample_examples", None)
    if sample is None:
        raise ConformanceError(f"{tag} has no sample_examples(n, seed): the suite needs rows the objective can train")
    path = tiny_model_dir(model)
    cfg = ModelConfig(source=f"local:{path}")
    tok = load_tokenizer(path, cfg)
    n_labels = len(LABELS)  # every objective gets the stand-in label space; one without labels ignores it
    rows, dev = sample(12, 0), sample(7, 1)
    o.check_rows(rows, f"objective {o.name!r}, train split", "train", n_labels)
    enc = _encoded(o, tok, rows, model, "train", tag)
    batch = _check_batch(enc, list(range(min(4, len(enc)))), int(tok.pad_token_id), tag)
    torch.manual_seed(0)
    net, _ = load_model(path, cfg, LABELS, tok, head=o)
    net.train()
    loss = net(**batch).loss
    if loss is None or not torch.isfinite(loss):
        raise ConformanceError(f"{tag} the model's loss on a collated batch is {loss}; labels must fit the head")
    loss.backward()
    if not any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters()):
        raise ConformanceError(f"{tag} the loss has no gradient on any parameter")
    metrics = _check_score(o, net, _encoded(o, tok, dev, model, "dev", tag), int(tok.pad_token_id), tag)
    return ObjectiveReport(o.name, model, len(rows), len(enc), tuple(batch["input_ids"].shape), loss.item(), metrics)


def check_objective(objective: Any, models: tuple[str, ...] = OBJECTIVE_MODELS) -> dict[str, ObjectiveReport | str]:
    """The suite on every tiny model the objective can load (an ``encoder_only`` one skips the tiny Llama, a
    ``decoder_only`` one the tiny BERT).

    Returns:
        ``{model: report}``, or ``{model: reason}`` where skipped.

    Raises:
        ConformanceError: a check failed (the message names the objective, the model and what is wrong).
    """
    o = _resolve(objective)
    out: dict[str, ObjectiveReport | str] = {}
    for kind in models:
        if kind == "llama" and getattr(o, "encoder_only", False):
            out[kind] = "encoder_only: transformers has this head for encoders only"
            continue
        if kind == "bert" and getattr(o, "decoder_only", False):
            out[kind] = "decoder_only: the objective needs a decoder (an encoder attends both ways)"
            continue
        out[kind] = run_objective(o, kind)
    return out


def objective_cases() -> list[str]:
    """Every registered objective's name, for ``pytest.mark.parametrize``."""
    from peftkit.plugin.registry import get_registry

    return sorted(get_registry().objectives)
