"""One CLUE row (a dict, from a local file or the hub) → one :class:`~peftkit.plugin.contracts.Example`."""

from __future__ import annotations

from typing import Any

from peftkit import DataError, Example
from peftkit.kit import field
from peftkit_plugins.clue.specs import TaskSpec

# Markers around the two WSC spans: the noun (span1) and the pronoun (span2). Plain ASCII that every
# tokenizer has, different for the two spans so the model can tell which is which.
SPAN1 = ("_", "_")
SPAN2 = ("[", "]")
KEYWORD_SEP = " "  # CSL keywords joined by a space, as CLUE's own baselines (CslProcessor) do
IDIOM_BLANK = "#idiom#"  # where ChID's passage lost its idiom (once per passage in every FewCLUE file)
CHID_CANDIDATES = 7


def to_example(
    spec: TaskSpec, row: dict[str, Any], where: str, line: int, index: dict[str, int], labelled: bool
) -> Example | None:
    """The row as an Example, or None when its label means "no gold label" (OCNLI/CMNLI ``-``).

    Args:
        spec: the task.
        row: one JSON object in the official format.
        where: the file (or hub split) for error messages.
        line: 1-based line in ``where``.
        index: label → id for the task's fixed label space.
        labelled: whether the split must carry labels (train/dev) or has none (test).
    """
    label = None
    if labelled:
        raw = str(
            field(row, spec.label_field, where, line)
        )  # FewCLUE tnews/iflytek store ints, CLUE strings: compare as text
        if raw in spec.skip_labels:
            return None
        if raw not in index:
            shown = ", ".join(list(index)[:20]) + (", ..." if len(index) > 20 else "")
            raise DataError(
                f"{where}:{line}: label {raw!r} is not one of {spec.name}'s {len(index)} labels ({shown}); "
                "is data_dir pointing at the right task?"
            )
        label = index[raw]
    if spec.kind == "chid":
        return Example("", None, label, row_id(row, where, line, labelled), choices=filled_in(row, where, line))
    text, pair = texts(spec, row, where, line)
    return Example(text, pair, label, row_id(row, where, line, labelled))


def filled_in(row: dict[str, Any], where: str, line: int) -> list[str]:
    """ChID: the passage once per candidate idiom, the idiom written into the blank (``#idiom#``)."""
    content = str(field(row, "content", where, line))
    candidates = field(row, "candidates", where, line)
    if content.count(IDIOM_BLANK) != 1:
        raise DataError(
            f"{where}:{line}: `content` must hold the blank {IDIOM_BLANK} once, found it "
            f"{content.count(IDIOM_BLANK)} times"
        )
    if not isinstance(candidates, list) or len(candidates) != CHID_CANDIDATES:
        raise DataError(
            f"{where}:{line}: `candidates` must be a list of {CHID_CANDIDATES} idioms, got {candidates!r:.80}"
        )
    return [content.replace(IDIOM_BLANK, str(c)) for c in candidates]


def row_id(row: dict[str, Any], where: str, line: int, labelled: bool) -> Any:
    """``id`` (test files, FewCLUE), else ``idx`` (CLUEWSC labelled rows), else the 0-based row number."""
    for key in ("id", "idx"):
        if row.get(key) is not None:
            return row[key]
    if not labelled:
        raise DataError(
            f"{where}:{line}: test row has no `id` (fields: {', '.join(row)}); the submission file needs it"
        )
    return line - 1  # what the hub's `idx` column holds for files without ids (AFQMC/TNEWS train and dev)


def texts(spec: TaskSpec, row: dict[str, Any], where: str, line: int) -> tuple[str, str | None]:
    """(text, text_pair) for the task's kind."""
    if spec.kind == "wsc":
        return mark_spans(row, where, line), None
    if spec.kind == "csl":
        keywords = field(row, "keyword", where, line)
        joined = KEYWORD_SEP.join(map(str, keywords)) if isinstance(keywords, list) else str(keywords)
        return joined, str(field(row, "abst", where, line))
    values = [str(field(row, name, where, line)) for name in spec.fields]
    return values[0], (values[1] if len(values) > 1 else None)


def mark_spans(row: dict[str, Any], where: str, line: int) -> str:
    """CLUEWSC ``text`` with span1 as ``_noun_`` and span2 as ``[pronoun]``.

    ``target.span*_index`` are character offsets into ``text``; each is checked against its
    ``span*_text`` so a shifted index fails loudly instead of marking the wrong words.
    """
    text = str(field(row, "text", where, line))
    target = field(row, "target", where, line)
    if not isinstance(target, dict):
        raise DataError(
            f"{where}:{line}: `target` must be an object with span1_text/span1_index/span2_text/span2_index"
        )
    spans = []
    for n, marks in ((1, SPAN1), (2, SPAN2)):
        span = str(field(target, f"span{n}_text", f"{where} target", line))
        start = field(target, f"span{n}_index", f"{where} target", line)
        if not isinstance(start, int) or text[start : start + len(span)] != span:
            found = text[start : start + len(span)] if isinstance(start, int) else "?"
            raise DataError(
                f"{where}:{line}: target.span{n}_index={start!r} does not point at span{n}_text {span!r} "
                f"(text there: {found!r}); the index must be the character offset of the span in `text`"
            )
        spans.append((start, start + len(span), marks))
    (a0, a1, _), (b0, b1, _) = spans
    if a0 < b1 and b0 < a1:
        raise DataError(
            f"{where}:{line}: span1 [{a0}, {a1}) and span2 [{b0}, {b1}) overlap; they cannot both be marked"
        )
    for start, end, (left, right) in sorted(spans, reverse=True):  # right to left, so offsets stay valid
        text = text[:start] + left + text[start:end] + right + text[end:]
    return text
