"""Base model + tokenizer loading: dtype, quantization (bitsandbytes), task head kept trainable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from peftkit.architectures import HEAD_NAMES
from peftkit.errors import ModelSourceError, PeftkitError
from peftkit.recipe import ModelConfig, split_source

log = logging.getLogger("peftkit")

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_source(cfg: ModelConfig, registry: Any) -> Path:
    """Turn ``model.source`` into a local folder through the model-source plugin for its scheme."""
    scheme, ref = split_source(cfg.source)
    src = registry.sources.get(scheme)
    if src is None:
        raise ModelSourceError(f"model.source: unknown scheme {scheme!r} (available: {', '.join(sorted(registry.sources))})")
    path = Path(src.resolve(ref, revision=cfg.revision))
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"model.source: {path} has no config.json; it is not a Hugging Face model folder")
    return path


def _check_weights(path: Path, allow_pickle: bool) -> None:
    names = [p.name for p in path.iterdir()]
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    if pickles and not allow_pickle:
        raise PeftkitError(
            f"model.source: {path} holds only pickle weights ({', '.join(sorted(pickles))}), which can run code when "
            "loaded. Convert them to safetensors, or set model.allow_pickle: true if you trust the file"
        )
    if not pickles:
        raise PeftkitError(f"model.source: {path} has no weights (*.safetensors); is the download or conversion complete?")


def quiet_transformers() -> None:
    """transformers prints load reports and progress bars; the run log says what matters."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(path: Path, cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token is None:  # decoders (Llama, Qwen, Gemma) often ship none; classification batches need one
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _quant_config(cfg: ModelConfig) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    q = cfg.quantization
    skip = list(HEAD_NAMES)  # the task head must stay in floating point to be trainable
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
        llm_int8_skip_modules=skip,
    )


def load_model(path: Path, cfg: ModelConfig, labels: list[str], tokenizer: Any, *, gradient_checkpointing: bool = False) -> tuple[Any, list[str]]:
    """Load ``AutoModelForSequenceClassification`` for ``labels``.

    Returns:
        (model, head_modules): head_modules are the head's module names that must be trained and
        saved with any method: ``classifier``/``score`` always, ``pooler`` when the checkpoint had
        none (a randomly initialised, frozen pooler would cap accuracy).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    if cfg.trust_remote_code:
        log.warning("model.trust_remote_code is on: code shipped with %s will run", path)
    _check_weights(path, cfg.allow_pickle)
    kwargs: dict[str, Any] = dict(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=not cfg.allow_pickle,
        output_loading_info=True,
    )
    if cfg.dtype != "auto":
        kwargs["dtype"] = getattr(torch, _DTYPES[cfg.dtype])
    elif not torch.cuda.is_available():
        kwargs["dtype"] = torch.float32
    if cfg.quantization is not None:
        kwargs["quantization_config"] = _quant_config(cfg)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise PeftkitError(f"model.source: cannot load a classification model from {path}: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    missing = set(info.get("missing_keys", []))
    heads = []
    for name in HEAD_NAMES:
        mod = _find_head(model, name)
        if mod is None:
            continue
        if name != "pooler" or any(".pooler." in f".{k}" or k.startswith("pooler.") for k in missing):
            heads.append(mod)
    if cfg.quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, heads


def _find_head(model: Any, name: str) -> str | None:
    """Module name of a head part (``classifier``, ``bert.pooler``, ``score``), or None."""
    for full, mod in model.named_modules():
        if full == name or full.endswith("." + name):
            if full.count(".") <= 1 and any(True for _ in mod.parameters()):
                return full
    return None


def memory_footprint(model: Any) -> int:
    """Bytes of parameters and buffers (quantized weights counted at their packed size)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        total += t.numel() * t.element_size()
    return total
