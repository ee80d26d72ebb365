"""CLUE and FewCLUE tasks: ``clue/afqmc`` ... ``clue/csl``, ``fewclue/bustm`` ... ``fewclue/csldcp``, ``fewclue/chid``.

Data comes from a local folder in the official format (one JSON object per line) — ``task.params.data_dir``,
or ``$PEFTKIT_CLUE_DIR/<task>`` (e.g. ``$PEFTKIT_CLUE_DIR/afqmc``, ``$PEFTKIT_CLUE_DIR/fewclue/bustm``) — or,
for CLUE tasks when neither is set, from the Hugging Face hub ``clue`` dataset (needs a network).

What each task gets right (see :mod:`peftkit_plugins.clue.specs` for the table):

- Label spaces are fixed constants in the hub's ``ClassLabel`` order, so local and hub ids agree
  (CLUEWSC2020: ``true`` = 0); a subset never changes them. Labels are compared as text, so FewCLUE's
  integer TNEWS/IFLYTEK labels and CLUE's string ones map to the same ids.
- OCNLI/CMNLI rows labelled ``-`` (no gold label) are dropped, as the hub does.
- CLUEWSC: the noun (span1) is marked ``_noun_`` and the pronoun (span2) ``[pronoun]`` in the text, at
  the character offsets ``span*_index``, each checked against ``span*_text``.
- CSL: text = the keywords joined by a space (as CLUE's baselines do), text_pair = the abstract.
- Submission files: the CLUE 1.1 names (``afqmc_predict.json``, ``tnews11_predict.json``,
  ``cluewsc11_predict.json``, ``ocnli_50k_predict.json`` ...) and FewCLUE's, named by the training run
  (``tnewsf_predict_0.json`` for train_0 … ``eprstmt_predict_all.json`` for train_few_all), one ``{"id": ..., "label": ...}`` line per test row, the label in the
  dataset's own vocabulary. From the hub, the id is the hub's ``idx`` (the 0-based row number: the hub
  drops the files' ``id``, except CSL's ``corpus_id``); that equals the official id for AFQMC and TNEWS
  (checked) but not for CLUEWSC (ids start at 1, and the hub serves the 1.0 test set), so build
  submission files from a local folder.

- ChID (``fewclue/chid``) is multiple choice: its answer is a position among 7 candidate idioms that
  differ in every row, so a label id names no class. Each candidate is written into the passage's
  ``#idiom#`` blank, the 7 passages are scored by a multiple-choice head and the best one is the
  answer; submissions are FewCLUE's ``{"id": ..., "answer": <position>}``.
"""

from peftkit import hookimpl
from peftkit_plugins.clue.specs import SPECS
from peftkit_plugins.clue.task import ClueTask


@hookimpl
def peftkit_register_tasks():
    return [ClueTask(spec) for spec in SPECS]
