"""Accuracy as an ``evaluate`` metric module that works offline.

``evaluate.load("accuracy")`` needs the hub; ``evaluate.load(peftkit.metrics.module_path("accuracy"))``
does not.
"""

import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of predictions equal to the references.",
            citation="",
            inputs_description="predictions, references: lists of integer label ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        p, r = np.asarray(predictions), np.asarray(references)
        return {"accuracy": float((p == r).mean()) if len(r) else 0.0}
