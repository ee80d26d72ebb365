"""What the conformance suites share: the error they raise, the tiny models and the fixed batches they run on."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit.kit import MULTIPLE_CHOICE, SEQUENCE_CLASSIFICATION
from peftkit.plugin.contracts import Example

MODELS = ("bert", "llama", "bert-multiple-choice")  # the last: tiny BERT with a multiple-choice head
LABELS = ["neg", "pos"]
# Pretrained-scale weights: with the usual 0.02 a tiny model's [CLS] state hardly depends on the input,
# and methods that only steer attention (prefix tuning) cannot lower the loss at all.
INIT_STD = 0.2
_CACHE: dict[str, Path] = {}
# the objective each tiny model kind is loaded with
OBJECTIVES = {
    "bert": SEQUENCE_CLASSIFICATION,
    "llama": SEQUENCE_CLASSIFICATION,
    "bert-multiple-choice": MULTIPLE_CHOICE,
}


class ConformanceError(AssertionError):
    """A plugin broke its contract; the message names the method (task, objective), the model and what is wrong."""


@dataclass
class Bench:
    kind: str
    path: Path
    cfg: Any
    tok: Any
    batch: dict[str, Any]


def tiny_model_dir(kind: str) -> Path:
    """Tiny model folders are built once per process (seeded, so identical every time)."""
    from peftkit.kit.tiny import make_tiny_bert, make_tiny_llama

    kind = "bert" if kind == "bert-multiple-choice" else kind  # same weights; the head is chosen when loading
    if kind not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="peftkit-conformance-"))
        atexit.register(shutil.rmtree, root, True)
        if kind == "bert":
            # no pooler: it becomes part of the task head, which must train and be saved
            _CACHE[kind] = make_tiny_bert(root / kind, with_pooler=False, init_std=INIT_STD)
        elif kind == "llama":
            _CACHE[kind] = make_tiny_llama(root / kind, init_std=INIT_STD)
        else:
            raise ValueError(f"model must be one of {MODELS}, got {kind!r}")
    return _CACHE[kind]


def bench(kind: str) -> Bench:
    """The tiny model of ``kind`` with its tokenizer and one fixed labelled batch of 16 rows."""
    from peftkit.build.batches import collate, encode
    from peftkit.build.model import load_tokenizer
    from peftkit.kit.tiny import sentiment_rows
    from peftkit.recipe import ModelConfig

    path = tiny_model_dir(kind)
    cfg = ModelConfig(source=f"local:{path}")
    tok = load_tokenizer(path, cfg)
    rows = sentiment_rows(16, seed=0)
    if kind == "bert-multiple-choice":  # which of two words ("good", "bad") has the row's sentiment; the right one
        examples = []  # comes first in even rows and second in odd rows
        for i, r in enumerate(rows):
            right, wrong = ("good", "bad") if r["label"] == "pos" else ("bad", "good")
            examples.append(
                Example(
                    text=r["text"], label=i % 2, id=r["id"], choices=[right, wrong] if i % 2 == 0 else [wrong, right]
                )
            )
    else:
        examples = [Example(text=r["text"], label=LABELS.index(r["label"]), id=r["id"]) for r in rows]
    enc = encode(examples, tok, 32, use_token_types=kind.startswith("bert"), split="train")
    return Bench(kind, path, cfg, tok, collate(enc, list(range(len(examples))), int(tok.pad_token_id)))


def base(b: Bench, seed: int, bits: int | None = None) -> tuple[Any, list[str]]:
    """A fresh base of the bench's model with its objective's head, seeded; ``(model, head modules)``."""
    import torch

    from peftkit.build.model import load_model
    from peftkit.recipe import QuantizationConfig

    torch.manual_seed(seed)  # the head (and pooler) are random: a different seed exposes an unsaved head
    cfg = b.cfg.model_copy(update={"quantization": QuantizationConfig(bits=bits) if bits else None})
    return load_model(b.path, cfg, LABELS, b.tok, head=OBJECTIVES[b.kind])
