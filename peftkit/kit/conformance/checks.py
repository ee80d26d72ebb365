"""The per-model checks of the method suite: what trains, the parameter count, gradients, logits."""

from __future__ import annotations

import re
from typing import Any

from peftkit.kit.conformance.common import ConformanceError
from peftkit.kit.peft_method import count_parameters


def in_head(name: str, heads: list[str]) -> bool:
    """Whether parameter ``name`` lies inside one of the head modules."""
    return any(f".{h}." in f".{name}" for h in heads)


def check_trainable(model: Any, base_names: dict[int, str], heads: list[str], regex: str | None, tag: str) -> None:
    """Exactly the intended parameters train: what the method adds, the head, and the base ones ``regex`` names."""
    live = {id(t): t for _, t in model.named_parameters()}
    train = [(n, t) for n, t in model.named_parameters() if t.requires_grad]
    wrong = [
        base_names[id(t)]
        for _, t in train
        if id(t) in base_names
        and not in_head(base_names[id(t)], heads)
        and not (regex and re.fullmatch(regex, base_names[id(t)]))
    ]
    if wrong:
        raise ConformanceError(
            f"{tag} base parameters train that the method does not declare: {wrong[:5]} "
            f"({len(wrong)} in all). Freeze them, or name them in trains_base_params"
        )
    if regex:
        frozen = [
            n
            for i, n in base_names.items()
            if re.fullmatch(regex, n) and not in_head(n, heads) and not (i in live and live[i].requires_grad)
        ]
        if frozen:
            raise ConformanceError(
                f"{tag} trains_base_params {regex!r} names parameters that do not train: {frozen[:5]}"
            )
    for h in heads:
        if not any(in_head(n, [h]) for n, _ in train):
            raise ConformanceError(
                f"{tag} task head {h!r} does not train; apply() must train (and save) ctx.head_modules"
            )
    if not any(not in_head(base_names.get(id(t), n), heads) for n, t in train):
        raise ConformanceError(f"{tag} only the task head trains; the method added or unfroze nothing")


def check_count(model: Any, tag: str) -> dict[str, Any]:
    """The reported trainable count equals the true count (and peft's own, where there is one)."""
    counts = count_parameters(model)
    true = sum(
        {id(t): t.numel() for _, t in model.named_parameters(remove_duplicate=False) if t.requires_grad}.values()
    )
    if counts["trainable"] != true:
        raise ConformanceError(f"{tag} reported trainable parameters {counts['trainable']:,} != true count {true:,}")
    if hasattr(model, "get_nb_trainable_parameters") and model.get_nb_trainable_parameters()[0] != true:
        raise ConformanceError(
            f"{tag} peft counts {model.get_nb_trainable_parameters()[0]:,} trainable, true count {true:,}"
        )
    return counts


def check_backward(model: Any, batch: dict[str, Any], tag: str) -> None:
    """A finite loss whose gradient reaches every trainable parameter, and not all of them with zero."""
    import torch

    model.train()
    loss = model(**batch).loss
    if loss is None or not torch.isfinite(loss):
        raise ConformanceError(
            f"{tag} forward gave loss {loss}; the model must return a finite loss for labelled batches"
        )
    loss.backward()
    params = [(n, t) for n, t in model.named_parameters() if t.requires_grad]
    missing = [n for n, t in params if t.grad is None]
    if missing:
        raise ConformanceError(f"{tag} trainable parameters got no gradient (not on the forward path?): {missing[:5]}")
    if all(float(t.grad.abs().sum()) == 0 for _, t in params):
        raise ConformanceError(f"{tag} every gradient is zero; the trainable parameters do not affect the loss")
    model.zero_grad(set_to_none=True)


def logits(model: Any, batch: dict[str, Any]) -> Any:
    """Float logits of ``batch`` in eval mode, without gradients."""
    import torch

    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return model(**inputs).logits.float()


def ce(model: Any, batch: dict[str, Any]) -> float:
    """Cross-entropy of the model's logits against the batch's labels."""
    import torch.nn.functional as F

    return float(F.cross_entropy(logits(model, batch), batch["labels"]))
