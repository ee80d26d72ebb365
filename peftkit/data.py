"""Tokenise once, batch by length (still shuffled), pad per batch.

The task yields :class:`~peftkit.interfaces.Example` s; everything about tensors happens here, so a
task plugin never touches a tokenizer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from peftkit.errors import DataError
from peftkit.interfaces import Example

log = logging.getLogger("peftkit")


@dataclass
class Encoded:
    """A tokenised split: token ids per sequence, labels (-1 = none) and the source examples.

    For a multiple-choice split (``choices`` > 0) example ``i`` owns the ``choices`` sequences from
    ``i * choices`` on, one per ``(text, choice)`` pair; otherwise one sequence per example.
    """

    input_ids: list[list[int]]
    labels: np.ndarray
    examples: list[Example]
    truncated: int = 0
    token_type_ids: list[list[int]] | None = None
    choices: int = 0

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> np.ndarray:
        """Per example: its sequence's length (multiple choice: its longest choice's)."""
        seq = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        return seq.reshape(len(self.examples), self.choices).max(axis=1) if self.choices else seq

    def rows(self, idx: list[int]) -> list[int]:
        """The sequences of the examples ``idx``, in order."""
        c = self.choices
        return [i * c + j for i in idx for j in range(c)] if c else list(idx)


def encode(examples: list[Example], tokenizer: Any, max_length: int, *, use_token_types: bool, split: str) -> Encoded:
    """Tokenise a split in one batched call (fast tokenizers run it in Rust)."""
    if not examples:
        raise DataError(f"the {split} split is empty: no examples were loaded; check the task's data files")
    choices = len(examples[0].choices) if examples[0].choices is not None else 0
    if choices:  # one (text, choice) pair per candidate, or the choice alone when every text is empty
        pairs: list[str | None] = [c for e in examples for c in e.choices or ()]
        texts = [e.text for e in examples for _ in range(choices)]
        if not any(texts):
            texts, pairs = [p or "" for p in pairs], [None] * len(pairs)
    else:
        texts = [e.text for e in examples]
        pairs = [e.text_pair for e in examples]
    has_pair = pairs[0] is not None
    if any((p is not None) != has_pair for p in pairs):
        raise DataError(f"the {split} split mixes single texts and text pairs")
    kwargs = dict(truncation=True, max_length=max_length, return_token_type_ids=use_token_types)
    enc = tokenizer(texts, pairs, **kwargs) if has_pair else tokenizer(texts, **kwargs)
    full = tokenizer(texts, pairs, truncation=False) if has_pair else tokenizer(texts, truncation=False)
    cut = np.fromiter((len(a) > max_length for a in full["input_ids"]), dtype=bool, count=len(texts))
    truncated = int(cut.reshape(len(examples), choices).any(axis=1).sum() if choices else cut.sum())  # examples, not sequences
    labels = np.array([-1 if e.label is None else e.label for e in examples], dtype=np.int64)
    types = enc.get("token_type_ids") if use_token_types else None
    return Encoded(enc["input_ids"], labels, examples, truncated, types, choices)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, mega: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length examples.

    Shuffle all indices, cut into mega-batches of ``mega × batch_size``, sort each by length, cut
    into batches, shuffle the batch order. Depends only on (seed, epoch), so a resumed run sees the
    same order.
    """
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
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[j : j + batch_size].tolist() for j in range(0, n, batch_size)]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Batches sorted by length (longest first, so memory peaks early); callers restore the order."""
    order = np.argsort(-lengths, kind="stable")
    return [order[j : j + batch_size].tolist() for j in range(0, len(order), batch_size)]


def collate(data: Encoded, idx: list[int], pad_id: int) -> dict[str, Any]:
    """Pad the selected examples to the longest among them (right padding): ``[batch, length]`` tensors, or
    ``[batch, choices, length]`` for a multiple-choice split."""
    import torch

    rows = data.rows(idx)
    lens = np.fromiter((len(data.input_ids[i]) for i in rows), dtype=np.int64, count=len(rows))
    keep = np.arange(int(lens.max())) < lens[:, None]  # row-major, so it fills rows in order
    ids = np.full(keep.shape, pad_id, dtype=np.int64)
    ids[keep] = np.concatenate([data.input_ids[i] for i in rows])
    shape = (len(idx), data.choices, keep.shape[1]) if data.choices else keep.shape
    batch = {"input_ids": torch.from_numpy(ids.reshape(shape)), "attention_mask": torch.from_numpy(keep.astype(np.int64).reshape(shape))}
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


def iterate(batches: list[list[int]], start: int = 0) -> Iterator[tuple[int, list[int]]]:
    for k in range(start, len(batches)):
        yield k, batches[k]
