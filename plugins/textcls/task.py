"""Task object for text classification from local files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftkit import DataError, Example
from peftkit.kit import classification_metrics, field, missing_files, read_rows
from peftkit_plugins.textcls.config import TextClassificationParams


class TextClassification:
    name = "text-classification"
    summary = "Classify texts (or text pairs) from your own jsonl/csv/tsv files; accuracy and macro-F1."
    params_model = TextClassificationParams
    metric = "accuracy"
    splits = ("train", "dev", "test")

    def __init__(self) -> None:
        self._inferred: dict[tuple, list[str]] = {}

    def check_data(self, params: TextClassificationParams) -> list[tuple[str, str]]:
        """For `peftkit validate`: every data file the recipe names exists on this machine."""
        return missing_files(params)

    def label_names(self, params: TextClassificationParams) -> list[str]:
        if params.labels:
            return list(params.labels)
        key = (params.train_file, params.format, params.label_field)
        if key not in self._inferred:
            self._inferred[key] = self._infer(params)
        return self._inferred[key]

    def _infer(self, params: TextClassificationParams) -> list[str]:
        seen = {
            str(field(row, params.label_field, params.train_file, line))
            for line, row in read_rows(params.train_file, params.format)
        }
        if not seen:
            raise DataError(f"{params.train_file}: no rows, so no labels can be inferred")
        return sorted(seen)

    def load_split(self, params: TextClassificationParams, split: str) -> list[Example]:
        path = {"train": params.train_file, "dev": params.dev_file, "test": params.test_file}[split]
        if path is None:
            return []
        limit = {"train": params.max_train_samples, "dev": params.max_dev_samples}.get(split)
        index = {name: i for i, name in enumerate(self.label_names(params))}
        out = []
        for position, (line, row) in enumerate(read_rows(path, params.format, limit=limit)):
            out.append(self._example(row, params, index, Path(path), line, position, labelled=split != "test"))
        return out

    def _example(
        self, row: dict, p: TextClassificationParams, index: dict, path: Path, line: int, position: int, labelled: bool
    ) -> Example:
        text = str(field(row, p.text_field, path, line))
        pair = str(field(row, p.text_pair_field, path, line)) if p.text_pair_field else None
        label = None
        if labelled or p.label_field in row:
            raw = str(field(row, p.label_field, path, line))
            if raw not in index:
                raise DataError(f"{path}:{line}: label {raw!r} is not in the task's labels ({', '.join(index)})")
            label = index[raw]
        return Example(text, pair, label, row_id(row, p.id_field, path, line, position, labelled))

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        return classification_metrics(predictions, references)

    def prediction_file(self, params: TextClassificationParams) -> str:
        return "test_predictions.jsonl"

    def format_prediction(self, example: Example, label_id: int, params: TextClassificationParams) -> dict[str, Any]:
        return {"id": example.id, "label": self.label_names(params)[label_id]}


def row_id(row: dict, id_field: str | None, path: Path | str, line: int, position: int, labelled: bool) -> Any:
    """The id a prediction is written with: ``row[id_field]``, or the data row's position in its file (from 0).

    Raises:
        DataError: an unlabelled (test) row lacks ``id_field``; test ids are what predictions are joined back on.
    """
    rid = row.get(id_field) if id_field else position
    if id_field and rid is None and not labelled:
        raise DataError(
            f"{path}:{line}: row has no id field {id_field!r} (fields: {', '.join(map(str, row))}); "
            "set task.params.id_field to the field holding the ids, or to null to use row positions"
        )
    return rid
