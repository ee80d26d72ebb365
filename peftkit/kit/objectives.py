"""Helpers for objective plugins: row checks shared by objectives whose rows carry one label id each."""

from __future__ import annotations

import numbers
from typing import Any

from peftkit.errors import DataError


def row_name(who: str, i: int, example: Any) -> str:
    """``task 't', train split: row 3 (id 'a7')``: how a row is named in a DataError."""
    rid = getattr(example, "id", None)
    return f"{who}: row {i}" + (f" (id {rid!r})" if rid is not None else "")


def check_labels(examples: list[Any], who: str, split: str, n_labels: int) -> None:
    """Every train and dev row has a label id in ``0 … n_labels-1`` (test rows may have none); DataError naming
    the row otherwise."""
    for i, e in enumerate(examples):
        row = row_name(who, i, e)
        if e.label is None:
            if split in ("train", "dev"):
                n = sum(x.label is None for x in examples)
                raise DataError(
                    f"{row} has no label, nor do {n - 1} more of its {len(examples)} rows: training and evaluation "
                    "need a label on every row (only test rows may be unlabelled)"
                )
        elif isinstance(e.label, bool) or not isinstance(e.label, numbers.Integral):
            raise DataError(
                f"{row}: label is {type(e.label).__name__} {e.label!r:.40}, not a label id (an int from 0 to "
                f"{n_labels - 1}); map label names to ids with the task's label_names()"
            )
        elif not 0 <= e.label < n_labels:
            raise DataError(
                f"{split} split: label id {e.label} (row id {e.id!r}) is outside the task's {n_labels} labels"
            )
