"""The selection split: a fixed share of the training rows held out to choose settings on, so dev stays honest.

With ``eval.split: selection`` a run carves ``data.selection_fraction`` of its training rows (after the task's
own subsetting such as ``max_train_samples``), trains on the rest and evaluates — picks its best checkpoint,
writes its final metrics — on the carved rows instead of dev. The carve is stratified by label and depends only
on ``train.seed``, so every trial of a learning-rate search at one seed scores the same rows, and none of them is
a row the model trained on or a dev row (dev is never read).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from peftkit.build.batches import Encoded
from peftkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np

SELECTION = "selection"
FEW_SELECTION_ROWS = 100  # below this one row moves accuracy by more than a point: too coarse to rank settings on
log = logging.getLogger("peftkit")


def selection_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the selection rows: ``fraction`` of each label's rows (at least one of a label with two
    or more rows), chosen by a generator seeded with ``seed``; the training rows are all the others."""
    import numpy as np

    rng = np.random.default_rng([seed, 0x5E1])  # its own stream: the data order uses [seed, epoch]
    picked: list[np.ndarray] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        n = min(len(rows) - 1, max(1, round(fraction * len(rows))))  # a label keeps at least one training row
        picked.append(rng.permutation(rows)[:n])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def subset(data: Encoded, idx: np.ndarray | list[int]) -> Encoded:
    """The examples ``idx`` of a tokenised split, in that order (every sequence of a row with choices)."""
    idx = [int(i) for i in idx]
    rows = data.rows(idx)
    types = [data.token_type_ids[i] for i in rows] if data.token_type_ids is not None else None
    return Encoded(
        [data.input_ids[i] for i in rows],
        data.labels[idx],
        [data.examples[i] for i in idx],
        token_type_ids=types,
        choices=data.choices,
        objective=data.objective,
    )


def carve_selection(splits: dict[str, Encoded], fraction: float, seed: int) -> None:
    """Replace ``splits["train"]`` by the rows trained on and ``splits["dev"]`` by the selection rows, in place."""
    import numpy as np

    if "train" not in splits:
        return  # a prediction-only load (load_run on test): nothing to carve, nothing trained
    train = splits["train"]
    if not isinstance(train, Encoded):  # an objective with its own encoding (masked LM) has no per-row labels
        raise DataError(
            "eval.split: selection carves labelled rows by label, but this task's objective encodes its rows its "
            "own way; use eval.split: dev (its own dev_file / dev_fraction)"
        )
    sel = selection_indices(train.labels, fraction, seed)
    if len(sel) == 0 or len(sel) == len(train):
        raise DataError(
            f"eval.split: selection: data.selection_fraction={fraction} of {len(train)} training rows leaves no "
            "selection or no training rows; use more training rows or another fraction"
        )
    if len(sel) < FEW_SELECTION_ROWS:
        log.warning(
            "eval.split: selection holds %d rows (data.selection_fraction=%g of %d training rows): one row moves "
            "accuracy by %.1f points, too coarse to rank settings on; hold out more rows, or for a search on a "
            "small training set score on dev (search.split: dev)",
            len(sel),
            fraction,
            len(train),
            100 / len(sel),
        )
    rest = np.setdiff1d(np.arange(len(train)), sel, assume_unique=True)
    splits["dev"], splits["train"] = subset(train, sel), subset(train, rest)


def apply_selection(recipe: Any, splits: dict[str, Encoded]) -> None:
    """Carve the selection split when the recipe asks for it (``eval.split: selection``); else do nothing."""
    if getattr(recipe.eval, "split", "dev") == SELECTION:
        carve_selection(splits, recipe.data.selection_fraction, recipe.train.seed)
