"""Dynamic masking as BERT does it (15% of the tokens; of those 80% [MASK], 10% a random token, 10% unchanged),
over masking units: single tokens, or whole words (all tokens of a word masked together, as Chinese BERT-wwm).

Every draw comes from a ``torch.Generator`` seeded from numbers the caller gives (the run's seed, the epoch, the
batch), so a run's masks are the same every time it runs, and different in every epoch.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


IGNORE = -100  # the label of positions without a prediction target (cross-entropy ignores it)
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen tokens; the remaining 10% keep their token


def generator(*numbers: int, idx: list[int] | None = None) -> Any:
    """A torch Generator seeded from ``numbers`` (and the batch's row indices, so that two micro-batches with the
    same position still differ)."""
    import numpy as np
    import torch

    extra = [zlib.crc32(np.asarray(idx, dtype=np.int64).tobytes())] if idx is not None else []
    seed = int(np.random.SeedSequence([int(n) & 0xFFFFFFFF for n in numbers] + extra).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def mask_tokens(ids: Any, groups: Any, g: Any, *, probability: float, mask_id: int, vocab_size: int) -> tuple[Any, Any]:
    """``(inputs, labels)`` for padded ``ids`` ``[rows, length]``.

    Args:
        ids: token ids (long tensor).
        groups: per token its masking unit, numbered from 0 within each row; -1 for tokens never masked
            (special tokens, padding). Each unit is chosen with ``probability``, so that share of the maskable
            tokens is masked whatever the unit; a row with maskable tokens gets at least one unit.
        g: the torch Generator every draw comes from.
        probability: the masking rate (0.15).
        mask_id: the tokenizer's mask token id.
        vocab_size: random replacements are drawn from ``0 … vocab_size-1``.
    """
    import torch

    rows, _ = ids.shape
    maskable = groups >= 0
    unit = groups.clamp(min=0)
    n_units = int(groups.max()) + 1 if maskable.any() else 1
    u = torch.rand(rows, n_units, generator=g)
    chosen = (torch.gather(u, 1, unit) < probability) & maskable
    empty = maskable.any(1) & ~chosen.any(1)
    if empty.any():  # no unit drawn in this row: take its unit with the smallest draw, so the row still teaches
        present = torch.zeros(rows, n_units, dtype=torch.long).scatter_add_(1, unit, maskable.long()) > 0
        pick = torch.where(present, u, torch.full_like(u, 2.0)).argmin(1)
        chosen |= empty[:, None] & (groups == pick[:, None])
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    r = torch.rand(ids.shape, generator=g)
    random_ids = torch.randint(vocab_size, ids.shape, generator=g)
    inputs = ids.clone()
    inputs[chosen & (r < MASK_SHARE)] = mask_id
    swap = chosen & (r >= MASK_SHARE) & (r < MASK_SHARE + RANDOM_SHARE)
    inputs[swap] = random_ids[swap]
    return inputs, labels


def pad(rows: list[list[int]], value: int) -> np.ndarray:
    """Right-pad lists of ints into one ``[len(rows), longest]`` int64 array."""
    import numpy as np

    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    keep = np.arange(int(lens.max())) < lens[:, None]
    out = np.full(keep.shape, value, dtype=np.int64)
    out[keep] = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    return out


def word_groups(text: str, offsets: list[tuple[int, int]], segment: Any) -> list[int]:
    """Per token, the index of the word (from ``segment(text)``, e.g. jieba) its first character belongs to.

    A token that starts inside a word joins that word; a token without characters (offsets ``(0, 0)`` for
    sentencepiece's bare "▁") joins the next word, whose first piece it is.
    """
    import numpy as np

    owner = np.zeros(len(text) + 1, dtype=np.int64)
    pos = 0
    for w, word in enumerate(segment(text)):
        owner[pos : pos + len(word)] = w
        pos += len(word)
    owner[pos:] = owner[pos - 1] + 1 if pos else 0
    out: list[int] = []
    for start, end in offsets:
        out.append(int(owner[min(start, len(text))]) if end > start else -1)
    for i in range(len(out) - 1, -1, -1):  # empty tokens take the word of the token after them
        if out[i] == -1:
            out[i] = out[i + 1] if i + 1 < len(out) else (out[i - 1] if i else 0)
    return out
