"""Classification metrics in plain numpy (accuracy, macro/micro/weighted F1): no hub, no Arrow round-trip."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


# a model that answers one class for at least this share of the dev rows has learned the class prior only
COLLAPSED_SHARE = 0.99


def f1_scores(p: np.ndarray, r: np.ndarray, num_labels: int | None = None) -> dict[str, float]:
    import numpy as np

    labels = np.arange(num_labels) if num_labels else np.union1d(p, r)
    f1s, supports = [], []
    for c in labels:
        tp = np.sum((p == c) & (r == c))
        fp = np.sum((p == c) & (r != c))
        fn = np.sum((p != c) & (r == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
        supports.append(np.sum(r == c))
    f1s, supports = np.asarray(f1s, float), np.asarray(supports, float)
    # macro-F1 over labels that occur in references or predictions (as scikit-learn does)
    present = supports + np.array([np.sum(p == c) for c in labels]) > 0
    macro = float(f1s[present].mean()) if present.any() else 0.0
    weighted = float((f1s * supports).sum() / supports.sum()) if supports.sum() else 0.0
    micro = float((p == r).mean()) if len(r) else 0.0
    return {"f1_macro": macro, "f1_micro": micro, "f1_weighted": weighted}


def classification_metrics(
    predictions: np.ndarray, references: np.ndarray, num_labels: int | None = None
) -> dict[str, float]:
    """accuracy and macro-F1 (plus micro/weighted F1) from label ids."""
    import numpy as np

    p, r = np.asarray(predictions), np.asarray(references)
    out = {"accuracy": float((p == r).mean()) if len(r) else 0.0}
    out.update(f1_scores(p, r, num_labels))
    return out
