"""Macro / micro / weighted F1 as an ``evaluate`` metric module that works offline."""

import datasets
import evaluate
import numpy as np

from peftkit.metrics import f1_scores


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 per label, averaged macro (unweighted), micro and weighted by support.",
            citation="",
            inputs_description="predictions, references: lists of integer label ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return f1_scores(np.asarray(predictions), np.asarray(references))
