"""Text classification from your own jsonl / csv / tsv files (one or two text fields + a label)."""

from peftkit import hookimpl
from peftkit_plugins.textcls.task import TextClassification


@hookimpl
def peftkit_register_tasks():
    return [TextClassification()]
