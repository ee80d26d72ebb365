"""The rows token tasks yield: an :class:`~peftkit.Example` with its units (characters or words) and a tag per unit."""

from __future__ import annotations

from dataclasses import dataclass, field

from peftkit import Example


@dataclass
class TokenExample(Example):
    """One tagged row. ``text`` is the units joined (no separator for Chinese characters, a space between words);
    the objective finds each unit in it, in order.

    Attributes:
        tokens: the units a tag belongs to (characters, or words).
        tags: one label id per unit (index into the task's label names), or None for an unlabelled (test) row.
    """

    tokens: list[str] = field(default_factory=list)
    tags: list[int] | None = None


def joined(tokens: list[str], separator: str | None = None) -> str:
    """The text of ``tokens``: joined by ``separator``, or (None) with no space between two CJK characters and a
    space elsewhere, as Chinese and English are written."""
    if separator is not None:
        return separator.join(tokens)
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if i and not (_cjk(tokens[i - 1][-1]) and _cjk(tok[0])):
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF or 0x3000 <= code <= 0x303F
