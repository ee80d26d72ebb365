"""Tiny models built in code, synthetic data and recipes, for tests of peftkit and of plugins.

Everything here works offline and in seconds; the conformance suite (:mod:`peftkit.kit.conformance`) runs on them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

WORDS = [
    "good",
    "great",
    "fine",
    "nice",
    "bad",
    "awful",
    "poor",
    "sad",
    "the",
    "a",
    "movie",
    "food",
    "day",
    "was",
    "is",
    "very",
]
POSITIVE, NEGATIVE = WORDS[:4], WORDS[4:8]
FILLER = WORDS[8:]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab() -> list[str]:
    return SPECIALS + WORDS + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def make_tiny_bert(
    path: str | Path,
    *,
    with_pooler: bool = True,
    seed: int = 0,
    dropout: float = 0.1,
    hidden_size: int = 32,
    init_std: float = 0.02,
) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer, saved as a Hugging Face folder.

    ``init_std`` 0.2 gives weights at a pretrained model's scale (the [CLS] state then depends on the input,
    which methods that only steer attention, like prefix tuning, need in order to learn).
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    v = {w: i for i, w in enumerate(_vocab())}
    tk = Tokenizer(models.WordPiece(vocab=v, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", v["[CLS]"]), ("[SEP]", v["[SEP]"])],
    )
    tok = BertTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        initializer_range=init_std,
    )
    BertModel(cfg, add_pooling_layer=with_pooler).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def make_tiny_llama(path: str | Path, *, seed: int = 0, init_std: float = 0.02) -> Path:
    """A 2-layer Llama-style decoder (hidden 32) with a word-level tokenizer, saved as a HF folder (``init_std``: see make_tiny_bert)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>"] + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        initializer_range=init_std,
    )
    LlamaModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def sentiment_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic, learnable rows: label ``pos`` iff a positive word appears."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"id": i, "text": " ".join(words), "label": label})
    return rows


def make_text_dataset(directory: str | Path, n_train: int = 64, n_dev: int = 32, n_test: int = 16) -> dict[str, Path]:
    """train/dev/test jsonl files of :func:`sentiment_rows` (test without labels)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2), ("test", n_test, 3)):
        rows = sentiment_rows(n, seed)
        if split == "test":
            rows = [{"id": r["id"], "text": r["text"]} for r in rows]
        files[split] = d / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def tiny_recipe(
    model_dir: str | Path,
    data: dict[str, Path],
    output_dir: str | Path,
    method: str = "lora",
    method_params: dict | None = None,
    **train: Any,
) -> dict[str, Any]:
    """A recipe dict for a few quick steps on tiny data (validate with :func:`peftkit.recipe.validate`)."""
    return {
        "model": {"source": f"local:{model_dir}"},
        "method": {"name": method, "params": method_params or {}},
        "task": {
            "name": "text-classification",
            "params": {
                "train_file": str(data["train"]),
                "dev_file": str(data["dev"]),
                "test_file": str(data["test"]),
                "labels": ["neg", "pos"],
                "id_field": "id",
            },
        },
        "data": {"max_length": 32},
        "train": {"epochs": 2, "batch_size": 8, "seed": 0, "lr": 2e-2, "log_every": 2, **train},
        "output_dir": str(output_dir),
    }
