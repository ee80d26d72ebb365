"""Reading labelled rows from jsonl / json / csv / tsv files, with file:line in every error."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peftkit.errors import DataError

FORMATS = ("auto", "jsonl", "csv", "tsv")


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return "jsonl"
    if suffix in {".tsv", ".txt"}:
        return "tsv"
    if suffix == ".csv":
        return "csv"
    raise DataError(
        f"{path}: cannot tell the format from the extension; set the task's `format` param (jsonl, csv or tsv)"
    )


def read_rows(path: str | Path, fmt: str = "auto", *, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)``; jsonl rows are objects, csv/tsv rows use the header line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; check the task's data path (or its environment variable)")
    fmt = detect_format(path) if fmt == "auto" else fmt
    count = 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        if fmt == "jsonl":
            rows: Iterator[tuple[int, dict[str, Any]]] = _jsonl(f, path)
        else:
            rows = _delimited(f, "\t" if fmt == "tsv" else ",")
        for line, row in rows:
            if limit is not None and count >= limit:
                return
            count += 1
            yield line, row


def _jsonl(f: Any, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        yield i, row


def _delimited(f: Any, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        yield reader.line_num, row


def field(row: dict[str, Any], name: str, path: Path | str, line: int) -> Any:
    """``row[name]``, or a DataError that names the file, line and the fields that do exist."""
    if name not in row or row[name] is None:
        raise DataError(f"{path}:{line}: row has no field {name!r} (fields: {', '.join(map(str, row))})")
    return row[name]


def missing_files(
    params: Any, keys: tuple[str, ...] = ("train_file", "dev_file", "test_file")
) -> list[tuple[str, str]]:
    """``(task.params.KEY, message)`` for each data file named by ``params.KEY`` that does not exist here, is empty,
    or does not start as UTF-8 text (its first 64 KiB are read); for a task's ``check_data`` (``peftkit validate``
    shows them as warnings, ``--strict`` as errors)."""
    out = []
    for key in keys:
        path = getattr(params, key)
        if path is None:
            continue
        where = "" if Path(path).is_absolute() else f" (relative paths are read from the current folder, {Path.cwd()})"
        try:
            found = Path(path).expanduser()
            if not found.exists():
                out.append((f"task.params.{key}", f"data file {path} does not exist{where}"))
            elif not found.is_file():
                out.append((f"task.params.{key}", f"{path} is a folder, not a data file{where}; name the file in it"))
            elif problem := _content_problem(found):
                out.append((f"task.params.{key}", f"data file {path} {problem}"))
        except OSError as exc:  # a name too long for this OS, no permission to look
            out.append((f"task.params.{key}", f"data file {path[:120]} cannot be checked: {exc.strerror}"))
    return out


def _content_problem(path: Path, size: int = 1 << 16) -> str | None:
    """Why the start of a data file cannot be read as text: empty, or not UTF-8 (offset and byte named)."""
    import codecs

    with path.open("rb") as f:
        head = f.read(size)
    if not head.strip():
        return "is empty" if not head else "holds only whitespace"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < size)  # a cut character is fine
    except UnicodeDecodeError as exc:
        return (
            f"is not UTF-8 text: byte 0x{head[exc.start]:02x} at offset {exc.start}; save it as UTF-8 "
            "(iconv -f GBK -t UTF-8 for a GBK file)"
        )
    return None
