"""The classification objectives: ``sequence-classification`` (one label per text or text pair; the default for
tasks that name no objective) and ``multiple-choice`` (one score per (text, choice) pair, the label being the
best choice's position).

They live together because they share everything but the row shape: the tokenising (:func:`peftkit.kit.encode`),
the classifier head, the per-row logits they score and the label checks.
"""

from peftkit import hookimpl
from peftkit_plugins.classification.objectives import MultipleChoice, SequenceClassification


@hookimpl
def peftkit_register_objectives():
    return [SequenceClassification(), MultipleChoice()]
