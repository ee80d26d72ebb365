"""Entity-level precision / recall / F1 with seqeval (CoNLL-2000 rules: an entity counts when its type and both
ends are right; a stray ``I-X`` starts an entity) and unit (character or word) accuracy."""

from __future__ import annotations

from typing import Any

PAD = ""  # the padding of the tag-name arrays the token-classification objective scores with


def _rows(values: Any, names: list[str] | None) -> list[list[str]]:
    """Tag-name rows from a 2-D array of names (padded with ``PAD``) or of ids (padded with negatives), or from a
    1-D array (one row). Ids are named by ``names``, or, without them, ``O`` for 0 and ``B-T<id>`` for the rest
    (what a dummy prediction of label ids gets, as ``peftkit validate`` makes to learn the metric names)."""
    import numpy as np

    if isinstance(values, np.ndarray) and values.ndim == 2:
        rows = values.tolist()
    else:
        items = list(values)
        nested = bool(items) and isinstance(items[0], (list, tuple, np.ndarray))
        rows = [list(r) for r in items] if nested else [items]
    out = []
    for row in rows:
        named = []
        for t in row:
            if isinstance(t, (int, np.integer)):
                if t >= 0:
                    named.append(names[t] if names else ("O" if t == 0 else f"B-T{t}"))
            elif t is not None and t != PAD:
                named.append(str(t))
        out.append(named)
    return out


def entity_metrics(predictions: Any, references: Any, names: list[str] | None = None) -> dict[str, float]:
    """``precision``, ``recall``, ``f1`` (micro over entities), ``f1_<TYPE>`` / ``precision_<TYPE>`` /
    ``recall_<TYPE>`` per entity type (of the rows, and of ``names`` when given), and ``token_accuracy`` (per unit)."""
    from seqeval.metrics import classification_report

    pred, ref = _rows(predictions, names), _rows(references, names)
    if len(pred) != len(ref) or any(len(p) != len(r) for p, r in zip(pred, ref)):
        raise ValueError("predictions and references must have the same rows and lengths")
    units = sum(len(r) for r in ref)
    correct = sum(p == r for pr, rr in zip(pred, ref) for p, r in zip(pr, rr))
    out = {"token_accuracy": correct / units if units else 0.0}
    report = classification_report(ref, pred, output_dict=True, zero_division=0)
    micro = report.pop("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    out.update(precision=float(micro["precision"]), recall=float(micro["recall"]), f1=float(micro["f1-score"]))
    for kind, row in report.items():
        if kind.endswith(" avg"):
            continue
        out.update({f"precision_{kind}": float(row["precision"]), f"recall_{kind}": float(row["recall"])})
        out[f"f1_{kind}"] = float(row["f1-score"])
    for kind in sorted({n[2:] for n in names or [] if n[:2] in ("B-", "I-")}):  # every type of the label space,
        for key in ("precision", "recall", "f1"):  # so each evaluation reports the same keys
            out.setdefault(f"{key}_{kind}", 0.0)
    return out
