"""Tasks on your own files: ``text-classification`` (jsonl / csv / tsv: one or two text fields + a label) and
``multiple-choice`` (jsonl: a passage, an optional question, a list of choices + the answer)."""

from peftkit import hookimpl
from peftkit_plugins.textcls.choice import MultipleChoice
from peftkit_plugins.textcls.task import TextClassification


@hookimpl
def peftkit_register_tasks():
    return [TextClassification(), MultipleChoice()]
