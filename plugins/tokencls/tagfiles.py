"""Reading your own tagged files: CoNLL-style columns or jsonl, with the file and line in every error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit import DataError


@dataclass
class TaggedRow:
    """A sentence as read: its tokens, its tag names (None when the file has none), its line and id."""

    tokens: list[str]
    tags: list[str] | None
    line: int
    id: Any


def file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "jsonl" if path.suffix.lower() in {".jsonl", ".json", ".ndjson"} else "conll"


def read_tagged(path: str | Path, fmt: str = "auto", p: Any = None) -> list[TaggedRow]:
    """Every sentence of a CoNLL or jsonl file; DataError naming the file and line for a line that is not UTF-8,
    a tag sequence of the wrong length, a file with no sentence."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; check task.params.train_file / dev_file / test_file")
    lines = list(_lines(path))
    rows = list(_jsonl(lines, path, p) if file_format(path, fmt) == "jsonl" else _conll(lines, path))
    if not rows:
        raise DataError(f"{path}: the file is empty (no sentence in it); a token task needs tagged sentences")
    return rows


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as fh:
        for line, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); convert "
                    "the file to UTF-8 (for GBK: iconv -f GBK -t UTF-8 in > out)"
                ) from None
            yield line, text.lstrip("\ufeff") if line == 1 else text


def _conll(lines: list[tuple[int, str]], path: Path) -> Iterator[TaggedRow]:
    """One token a line (first column), its tag in the last column; blank lines end sentences; ``-DOCSTART-``
    lines are skipped. A file whose lines all have one column has no tags (a test file)."""
    tokens: list[str] = []
    tags: list[str | None] = []
    start = 0
    for line, text in [*lines, (len(lines) + 1, "")]:
        cols = text.split()
        if cols and cols[0] == "-DOCSTART-":
            continue
        if not cols:
            if tokens:
                yield _conll_row(tokens, tags, start, path)
            tokens, tags = [], []
            continue
        if not tokens:
            start = line
        tokens.append(cols[0])
        tags.append(cols[-1] if len(cols) > 1 else None)
        if (tags[-1] is None) != (tags[0] is None):
            raise DataError(
                f"{path}:{line}: {len(cols)} column(s) where the sentence starting on line {start} has "
                f"{'one' if tags[0] is None else 'a tag column'}; every token of a sentence needs its tag (token TAG)"
            )


def _conll_row(tokens: list[str], tags: list[str | None], start: int, path: Path) -> TaggedRow:
    return TaggedRow(tokens, None if tags[0] is None else [str(t) for t in tags], start, f"{path.name}:{start}")


def _jsonl(lines: list[tuple[int, str]], path: Path, p: Any) -> Iterator[TaggedRow]:
    tokens_field = getattr(p, "tokens_field", "tokens")
    tags_field = getattr(p, "tags_field", "tags")
    id_field = getattr(p, "id_field", None)
    for line, text in lines:
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}")
        tokens = row.get(tokens_field)
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
            raise DataError(
                f"{path}:{line}: field {tokens_field!r} must be a non-empty list of non-blank strings "
                f"(fields: {', '.join(map(str, row))}); set task.params.tokens_field"
            )
        tags = row.get(tags_field)
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise DataError(f"{path}:{line}: field {tags_field!r} must be a list of tag names, got {tags!r:.60}")
            if len(tags) != len(tokens):
                raise DataError(
                    f"{path}:{line}: {len(tokens)} tokens but {len(tags)} tags; give exactly one tag per token"
                )
        rid = row.get(id_field) if id_field else line
        if id_field and rid is None:
            raise DataError(f"{path}:{line}: no id field {id_field!r} (fields: {', '.join(map(str, row))})")
        yield TaggedRow(tokens, tags, line, rid)
