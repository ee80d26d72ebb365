"""Base model + tokenizer loading: the objective's head, dtype, quantization (bitsandbytes), heads kept trainable."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftkit.errors import ModelSourceError, PeftkitError
from peftkit.plugin.architectures import HEAD_NAMES
from peftkit.plugin.contracts import ApplyContext
from peftkit.recipe import ModelConfig, family_refusal, folder_model_type, split_source

log = logging.getLogger("peftkit")


def resolve_source(cfg: ModelConfig, registry: Any) -> Path:
    """Turn ``model.source`` into a local folder through the model-source plugin for its scheme."""
    scheme, ref = split_source(cfg.source)
    src = registry.sources.get(scheme)
    if src is None:
        raise ModelSourceError(
            f"model.source: unknown scheme {scheme!r} (available: {', '.join(sorted(registry.sources))})"
        )
    path = Path(src.resolve(ref, revision=cfg.revision))
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"model.source: {path} has no config.json; it is not a Hugging Face model folder")
    log.info("model %s: %s", cfg.source, path)
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
        raise PeftkitError(
            f"model.source: {path} has no weights (*.safetensors); is the download or conversion complete?"
        )


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


# Kept in floating point besides the task head: a causal-LM output layer trains (and is tied to the
# embeddings) when a task fine-tunes it; passing llm_int8_skip_modules drops transformers' own default.
_ALWAYS_FLOAT = ("lm_head",)
_BNB_PARAMS = {"Params4bit", "Int8Params"}


def _quant_config(cfg: ModelConfig, keep_float: Sequence[str] = ()) -> Any:
    """BitsAndBytesConfig for ``model.quantization``; heads and ``keep_float`` modules stay unquantized."""
    import torch
    from transformers import BitsAndBytesConfig

    q = cfg.quantization
    # bitsandbytes weights are integers and cannot require gradients: whatever trains in full must stay float
    skip = [_anywhere(n) for n in dict.fromkeys([*HEAD_NAMES, *_ALWAYS_FLOAT, *keep_float])]
    if q.bits == 8:
        ignored = sorted(q.model_fields_set & {"type", "double_quant", "compute_dtype"})
        if ignored:
            log.warning("model.quantization: %s only apply to 4-bit and are ignored with bits: 8", ", ".join(ignored))
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    if q.compute_dtype == "bfloat16":
        warn_if_bf16_emulated("model.quantization.compute_dtype=bfloat16", "model.quantization.compute_dtype: float32")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
        llm_int8_skip_modules=skip,
    )


def warn_if_bf16_emulated(setting: str, instead: str) -> None:
    """Warn that ``setting`` asks for bf16 on a machine that only emulates it (no GPU, no AVX512-BF16)."""
    import torch

    if not torch.cuda.is_available() and not cpu_has_bf16():
        log.warning(
            "%s: this CPU has no AVX512-BF16, so bf16 matmuls are emulated and slower than float32; set %s",
            setting,
            instead,
        )


def cpu_has_bf16() -> bool:
    """Whether the CPU runs bf16 natively (measured: 4-bit layers ~1.7x faster in bf16 than fp32 with it)."""
    try:
        from bitsandbytes.functional import has_avx512bf16
    except ImportError:  # an older bitsandbytes without the check
        return False
    return bool(has_avx512bf16())


def _anywhere(name: str) -> str:
    """Skip pattern for a module name at any depth, and everything inside it.

    transformers matches skip entries from the start of the module name (or as a plain suffix): bare
    ``pooler`` misses ``bert.pooler.dense``, so BERT's pooler was quantized and, when the checkpoint
    has none, could not be trained or even run.
    """
    return rf"(?:.*\.)?{re.escape(name)}"


def _check_unquantized(model: Any, names: Sequence[str]) -> None:
    """Fail loudly if a module that must train was quantized anyway (a skip pattern missed it)."""
    for full, mod in model.named_modules():
        if any(full == n or full.endswith("." + n) for n in names):
            bad = [f"{full}.{pn}" for pn, p in mod.named_parameters() if p.__class__.__name__ in _BNB_PARAMS]
            if bad:
                raise PeftkitError(
                    f"model.quantization: {bad[0]} was quantized although it must train in floating point; "
                    "please report this with your model and transformers version, or set model.quantization: null"
                )


def method_float_modules(
    method: Any, params: Any, model_path: Path, total_steps: int = 0, trained: Path | None = None
) -> list[str]:
    """Base modules a method trains in full (peft ``modules_to_save``), which must not be quantized.

    A trained model says so in its saved ``adapter_config.json``; before training, only peft-backed
    methods (with ``make_config``) can tell before the model exists. Other methods add new float
    modules, or train base weights and are refused on quantized bases at validate time.
    """
    import json

    if trained is not None:
        saved = trained / "adapter_config.json"
        extra = json.loads(saved.read_text()).get("modules_to_save") if saved.is_file() else None
    else:
        make = getattr(method, "make_config", None)
        if make is None:
            return []
        model_type = json.loads((model_path / "config.json").read_text()).get("model_type", "")
        config = make(params, ApplyContext(model_type=model_type, total_steps=total_steps))
        extra = getattr(config, "modules_to_save", None)
    extra = extra or []
    return [extra] if isinstance(extra, str) else list(extra)


def _keep_cpu_4bit_trainable(model: Any) -> None:
    """Switch off bitsandbytes' CPU inference repacking of 4-bit weights (AVX512-BF16 machines).

    In eval mode bitsandbytes 0.50 repacks each Linear4bit in place for a bf16 kernel and never unpacks it:
    training after an evaluation then fails ("a view of a leaf Variable ... in-place operation") and
    eval logits differ from train-mode ones. Keeping one layout makes mid-run evaluation and the
    reloaded model's metric agree.
    """
    for mod in model.modules():
        if hasattr(mod, "support_avx512bf16_for_cpu"):
            mod.support_avx512bf16_for_cpu = False


def _prepare_quantized(model: Any, keep_float: Sequence[str], gradient_checkpointing: bool) -> Any:
    """Check the float modules, keep CPU 4-bit layers trainable, then peft's k-bit training preparation
    (freeze the base, cast the remaining half-precision parameters to float32, optional checkpointing)."""
    from peft import prepare_model_for_kbit_training

    _check_unquantized(model, [*HEAD_NAMES, *_ALWAYS_FLOAT, *keep_float])
    _keep_cpu_4bit_trainable(model)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def objective_named(head: Any) -> Any:
    """An Objective from a registered name, an Objective object, or None (the default objective)."""
    if head is not None and not isinstance(head, str):
        return head
    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    name = head or reg.default_objective
    if name not in reg.objectives:
        raise PeftkitError(f"no objective {name!r} is registered (registered: {', '.join(reg.objectives)})")
    return reg.objectives[name]


def load_model(
    path: Path,
    cfg: ModelConfig,
    labels: list[str],
    tokenizer: Any,
    *,
    gradient_checkpointing: bool = False,
    keep_float: Sequence[str] = (),
    head: Any = None,
) -> tuple[Any, list[str]]:
    """Load the base model with the head of objective ``head`` (a registered name or an Objective; None = the
    default objective): its ``auto_class``, with its ``model_kwargs(labels)``.

    Returns:
        (model, head_modules): head_modules are the head's module names that must be trained and saved with any
        method (the objective's ``head_modules``: a classifier always, BERT's pooler when the checkpoint had
        none, a masked-LM head the checkpoint lacked). ``keep_float``: more module names that stay unquantized
        when ``cfg.quantization`` is set (see :func:`method_float_modules`).
    """
    import torch
    import transformers

    objective = objective_named(head)
    auto = getattr(transformers, objective.auto_class)
    if cfg.trust_remote_code:
        log.warning("model.trust_remote_code is on: code shipped with %s will run", path)
    _check_weights(path, cfg.allow_pickle)
    # transformers refuses an encoder-only head on a decoder itself (load_problem explains it below); an encoder
    # under a decoder objective it loads all the same, so that is refused here
    refusal = getattr(objective, "decoder_only", False) and family_refusal(
        objective, folder_model_type(path), "this run"
    )
    if refusal:
        raise PeftkitError(f"model.source: {refusal}")
    kwargs: dict[str, Any] = dict(
        **objective.model_kwargs(labels),
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=not cfg.allow_pickle,
        output_loading_info=True,
    )
    if cfg.dtype != "auto":
        kwargs["dtype"] = getattr(torch, cfg.dtype)  # the schema allows float32 | bfloat16 | float16 | auto
    elif not torch.cuda.is_available():
        kwargs["dtype"] = torch.float32
    keep_float = [*keep_float, *getattr(objective, "float_modules", ())]
    if cfg.quantization is not None:
        kwargs["quantization_config"] = _quant_config(cfg, keep_float)
    try:
        model, info = auto.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        explain = getattr(objective, "load_problem", None)
        why = (explain(exc) if explain else None) or str(exc)
        raise PeftkitError(f"model.source: cannot load a {objective.name} model from {path}: {why}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    heads = objective.head_modules(model, set(info.get("missing_keys", [])))
    if cfg.quantization is not None:
        model = _prepare_quantized(model, keep_float, gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, heads


def classifier_heads(model: Any, missing: set[str]) -> list[str]:
    """The head modules a classification model trains and saves: the classifier always, the pooler only when the
    checkpoint had none (then it is randomly initialised, and frozen it would cap accuracy)."""
    heads = []
    for name in HEAD_NAMES:
        mod = _find_head(model, name)
        if mod is None:
            continue
        if name != "pooler" or any(".pooler." in f".{k}" or k.startswith("pooler.") for k in missing):
            heads.append(mod)
    return heads


def _find_head(model: Any, name: str) -> str | None:
    """Module name of a head part (``classifier``, ``bert.pooler``, ``score``), or None."""
    for full, mod in model.named_modules():
        if full == name or full.endswith("." + name):
            if full.count(".") <= 1 and any(True for _ in mod.parameters()):
                return full
    return None
