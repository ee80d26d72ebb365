"""Tokenise once, batch by length (still shuffled), pad per batch.

The task yields :class:`~peftkit.plugin.contracts.Example` s and its objective turns them into tensors, so a
task plugin never touches a tokenizer. :func:`encode` and :func:`pad_batch` are the tokenising and padding an
objective with one label per row uses (through :mod:`peftkit.kit`); :func:`collate` is what the training loop
and evaluation call, and it goes through the split's own ``collate`` where the objective made one (masking).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftkit.errors import DataError
from peftkit.plugin.contracts import Example

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("peftkit")


@dataclass
class Encoded:
    """A tokenised split: token ids per sequence, labels (-1 = none) and the source examples.

    For a split whose rows carry choices (``choices`` > 0) example ``i`` owns the ``choices`` sequences from
    ``i * choices`` on, one per ``(text, choice)`` pair; otherwise one sequence per example.
    """

    input_ids: list[list[int]]
    labels: np.ndarray
    examples: list[Example]
    truncated: int = 0
    token_type_ids: list[list[int]] | None = None
    choices: int = 0
    indistinct: int = (
        0  # multiple choice: rows whose choices all became the same sequence (truncation cut the difference)
    )
    objective: Any = None  # the Objective that encoded the split (evaluation scores through it)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> np.ndarray:
        """Per example: its sequence's length (multiple choice: its longest choice's)."""
        import numpy as np

        seq = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        return seq.reshape(len(self.examples), self.choices).max(axis=1) if self.choices else seq

    def rows(self, idx: list[int]) -> list[int]:
        """The sequences of the examples ``idx``, in order."""
        c = self.choices
        return [i * c + j for i in idx for j in range(c)] if c else list(idx)


def encode(examples: list[Example], tokenizer: Any, max_length: int, *, use_token_types: bool, split: str) -> Encoded:
    """Tokenise a split in batched calls (fast tokenizers run them in Rust): one sequence per row, or one per
    (row, choice) when the rows carry ``choices``."""
    import numpy as np

    if not examples:
        raise DataError(f"the {split} split is empty: no examples were loaded; check the task's data files")
    texts, pairs, choices = _sequences(examples)
    if not choices and any((p is not None) != (pairs[0] is not None) for p in pairs):
        raise DataError(f"the {split} split mixes single texts and text pairs")
    enc = _tokenize(
        tokenizer, texts, pairs, truncation=True, max_length=max_length, return_token_type_ids=use_token_types
    )
    full = _tokenize(tokenizer, texts, pairs, truncation=False)
    cut = np.fromiter((len(a) > max_length for a in full["input_ids"]), dtype=bool, count=len(texts))
    truncated = int(
        cut.reshape(len(examples), choices).any(axis=1).sum() if choices else cut.sum()
    )  # examples, not sequences
    labels = np.array([-1 if e.label is None else e.label for e in examples], dtype=np.int64)
    types = enc.get("token_type_ids") if use_token_types else None
    ids = enc["input_ids"]
    indistinct = (
        sum(len({tuple(x) for x in ids[i * choices : (i + 1) * choices]}) == 1 for i in range(len(examples)))
        if choices
        else 0
    )
    return Encoded(ids, labels, examples, truncated, types, choices, indistinct)


def _sequences(examples: list[Example]) -> tuple[list[str], list[str | None], int]:
    """(first segments, second segments or None, choices per row): one sequence per example, or per
    (example, choice) in a split with choices — ``(text, choice)``, or the choice alone where the row's text is empty."""
    choices = len(examples[0].choices) if examples[0].choices is not None else 0
    if not choices:
        return [e.text for e in examples], [e.text_pair for e in examples], 0
    texts: list[str] = []
    pairs: list[str | None] = []
    for e in examples:
        for c in e.choices or ():
            texts.append(e.text or c)
            pairs.append(c if e.text else None)
    return texts, pairs, choices


def _tokenize(tokenizer: Any, texts: list[str], pairs: list[str | None], **kwargs: Any) -> dict[str, list[Any]]:
    """One batched call for the single texts and one for the pairs (a split with choices may hold both), merged
    back in order."""
    out: dict[str, list[Any]] = {}
    for want_pair in (False, True):
        idx = [i for i, p in enumerate(pairs) if (p is not None) == want_pair]
        if not idx:
            continue
        firsts = [texts[i] for i in idx]
        enc = tokenizer(firsts, [pairs[i] for i in idx], **kwargs) if want_pair else tokenizer(firsts, **kwargs)
        for key, values in enc.items():
            column = out.setdefault(key, [None] * len(texts))
            for i, v in zip(idx, values):
                column[i] = v
    return out


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, mega: int = 50
) -> list[list[int]]:
    """Shuffled batches of similar-length examples.

    Shuffle all indices, cut into mega-batches of ``mega × batch_size``, sort each by length, cut
    into batches, shuffle the batch order. Depends only on (seed, epoch), so a resumed run sees the
    same order.
    """
    import numpy as np

    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    step = mega * batch_size
    for i in range(0, len(order), step):
        chunk = order[i : i + step]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[j : j + batch_size].tolist() for j in range(0, len(chunk), batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[k] for k in perm]


def shuffled_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    import numpy as np

    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[j : j + batch_size].tolist() for j in range(0, n, batch_size)]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Batches sorted by length (longest first, so memory peaks early); callers restore the order."""
    import numpy as np

    order = np.argsort(-lengths, kind="stable")
    return [order[j : j + batch_size].tolist() for j in range(0, len(order), batch_size)]


def collate(data: Any, idx: list[int], pad_id: int, *, epoch: int = 0, batch: int = 0) -> dict[str, Any]:
    """The model inputs for rows ``idx`` of an encoded split: the split's own ``collate`` (an objective that masks
    tokens draws them from ``epoch`` and ``batch``, the batch's position in the epoch), else :func:`pad_batch`."""
    own = getattr(data, "collate", None)
    if own is not None:
        return own(idx, pad_id, epoch=epoch, batch=batch)
    return pad_batch(data, idx, pad_id)


def pad_batch(data: Encoded, idx: list[int], pad_id: int) -> dict[str, Any]:
    """Pad the selected examples to the longest among them (right padding): ``[batch, length]`` tensors, or
    ``[batch, choices, length]`` for a split whose rows have several choices."""
    import numpy as np
    import torch

    rows = data.rows(idx)
    lens = np.fromiter((len(data.input_ids[i]) for i in rows), dtype=np.int64, count=len(rows))
    keep = np.arange(int(lens.max())) < lens[:, None]  # row-major, so it fills rows in order
    ids = np.full(keep.shape, pad_id, dtype=np.int64)
    ids[keep] = np.concatenate([data.input_ids[i] for i in rows])
    shape = (len(idx), data.choices, keep.shape[1]) if data.choices else keep.shape
    batch = {
        "input_ids": torch.from_numpy(ids.reshape(shape)),
        "attention_mask": torch.from_numpy(keep.astype(np.int64).reshape(shape)),
    }
    if data.token_type_ids is not None:
        types = np.zeros(keep.shape, dtype=np.int64)
        types[keep] = np.concatenate([data.token_type_ids[i] for i in rows])
        batch["token_type_ids"] = torch.from_numpy(types.reshape(shape))
    labels = data.labels[idx]
    if (labels >= 0).all():
        batch["labels"] = torch.as_tensor(labels)
    return batch


def steps_per_epoch(n: int, batch_size: int, grad_accum: int, processes: int = 1) -> int:
    """Optimizer steps in one epoch (the last partial accumulation still steps)."""
    batches = math.ceil(n / (batch_size * processes))
    return max(1, math.ceil(batches / grad_accum))
