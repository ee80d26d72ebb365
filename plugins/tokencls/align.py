"""Tag units (characters or words) to sub-word tokens and back, through the tokenizer's character offsets.

A row is a list of units (Chinese characters, or words) joined into one text, so the tokenizer sees the text as
it was pretrained on (XLM-R's sentencepiece keeps 中共中央 one piece). Each token covers characters and so units:

- the token that starts a unit carries the unit's tag;
- a token that starts inside a unit (the second piece of a long word) carries nothing (``first``, the BERT paper's
  choice) or the unit's tag turned into its ``I-`` continuation (``all``);
- a token that spans several units (一九九七年 as one piece) carries its first unit's tag, and when predicting,
  the units after the first inherit its tag as a continuation. An entity that starts inside such a token cannot
  be found (measured for multilingual-e5 on 199801.txt: 1.5% of entity starts).

Units the truncation cut off are predicted ``O`` (the scores count them, so truncation shows as lower recall).
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100  # the label of tokens without a training target (cross-entropy ignores it)


def unit_spans(text: str, units: list[str]) -> list[tuple[int, int]] | None:
    """The ``(start, end)`` character span of each unit in ``text``, found in order; None if one is missing."""
    spans, pos = [], 0
    for u in units:
        at = text.find(u, pos)
        if at < 0 or not u:
            return None
        spans.append((at, at + len(u)))
        pos = at + len(u)
    return spans


def continuation(labels: list[str]) -> list[int]:
    """Per label id, the id a unit continuing the same entity takes: ``B-X`` → ``I-X``; others unchanged."""
    index = {name: i for i, name in enumerate(labels)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(labels)]


@dataclass
class RowAlignment:
    """How one tokenised row maps to its units.

    Attributes:
        token_labels: per token, the training label id (IGNORE for special tokens and unlabelled positions).
        unit_token: per unit, the token covering its first character (-1 when truncation cut it off).
        unit_starts: per unit, whether that token starts at the unit (else the unit continues the token's tag).
    """

    token_labels: list[int]
    unit_token: list[int]
    unit_starts: list[bool]


def align_row(
    offsets: list[tuple[int, int]],
    spans: list[tuple[int, int]],
    tags: list[int] | None,
    cont: list[int],
    mode: str = "first",
) -> RowAlignment:
    """Align one row: ``offsets`` of its tokens (``(0, 0)`` for special tokens), ``spans`` of its units in the
    same text, ``tags`` per unit (None for an unlabelled row), ``cont`` from :func:`continuation`, ``mode``
    ``first`` or ``all``."""
    length = max((e for _, e in spans), default=0)
    owner = [-1] * (length + 1)  # character -> unit (-1: a separator such as a space)
    for u, (s, e) in enumerate(spans):
        owner[s:e] = [u] * (e - s)
    starts: list[int] = []  # per token its first character that belongs to a unit (-1: none)
    for s, e in offsets:
        c = next((c for c in range(s, min(e, length)) if owner[c] >= 0), -1) if e > s else -1
        starts.append(c)
    char_token = [-1] * length  # character -> the token covering it (a later token wins: XLM-R's bare "▁" piece
    for t, ((_, e), c) in enumerate(zip(offsets, starts)):  # overlaps the piece after it, which is the real one)
        if c >= 0:
            char_token[c : min(e, length)] = [t] * (min(e, length) - c)
    labels = [IGNORE] * len(offsets)
    for t, c in enumerate(starts):
        if c < 0 or tags is None or char_token[c] != t:
            continue
        u = owner[c]
        if c == spans[u][0]:
            labels[t] = tags[u]
        elif mode == "all":
            labels[t] = cont[tags[u]]
    unit_token = [char_token[s] if s < length else -1 for s, _ in spans]
    unit_starts = [t >= 0 and starts[t] == s for t, (s, _) in zip(unit_token, spans)]
    return RowAlignment(labels, unit_token, unit_starts)


def unit_predictions(token_preds: list[int], row: RowAlignment, cont: list[int], outside: int) -> list[int]:
    """Per unit, the predicted label id from the row's token predictions (``outside``, the ``O`` id, where
    truncation left the unit without a token)."""
    out = []
    for t, own in zip(row.unit_token, row.unit_starts):
        if t < 0 or t >= len(token_preds):
            out.append(outside)
        else:
            out.append(token_preds[t] if own else cont[token_preds[t]])
    return out
