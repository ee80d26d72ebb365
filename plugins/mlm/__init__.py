"""Masked-language-model pretraining on your own text: the ``masked-lm`` objective (dynamic masking, whole-word
masking for Chinese with jieba) and the ``mlm`` task (``.txt`` one document a line, or jsonl with a text field)."""

from peftkit import hookimpl
from peftkit_plugins.mlm.objective import MaskedLM
from peftkit_plugins.mlm.task import MlmTask


@hookimpl
def peftkit_register_objectives():
    return [MaskedLM()]


@hookimpl
def peftkit_register_tasks():
    return [MlmTask()]
