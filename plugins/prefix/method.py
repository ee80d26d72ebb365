"""Prefix tuning (Li & Liang, 2021) through peft, for classification heads and for decoders that generate.

peft 0.21 hands the prefix to the model as ``past_key_values``, checking the backbone's signature for
that name; transformers 5 renamed the argument ``cache`` (keeping ``past_key_values`` only as a
deprecated alias), so peft refuses every classification model ("Model does not support past key
values"). :func:`_prefix_forward` passes the prefix as ``cache`` instead.

On a decoder (a model that generates: the ``causal-lm`` and ``label-likelihood`` objectives) the peft
model is peft's causal-LM form, with two repairs bound in its place:

- :func:`_causal_forward` gives each sequence's first real token position ``num_virtual_tokens`` (the
  prefix holds 0..n-1, where the real tokens it is initialised from were), padded or not. peft's forward
  leaves positions to the model, which counts them from the first column, padding included, while
  ``generate()`` and left-padded likelihood scoring count them from 0 at the first real token: the prefix
  would be trained at one set of positions and used at another.
- :func:`_prepare_for_generation` puts the prefix into the cache that ``generate()`` passes (transformers
  5.25 calls it ``cache``). peft's version puts it into ``past_key_values`` beside that cache, which
  transformers drops with a warning ("Both `past_key_values` and `cache` are set"), so every answer was
  generated as if there were no prefix (checked on Gemma 3 270M, 2026-12-07).

They are bound on each model this method builds or loads. Everything else — the prompt encoder, saving,
loading — is peft's.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from peftkit import ApplyContext, PeftkitError
from peftkit.kit import MULTIPLE_CHOICE, SEQUENCE_CLASSIFICATION, PeftMethod

log = logging.getLogger("peftkit")


def make_config(p: Any, ctx: ApplyContext) -> Any:
    """The config for a classification head; :meth:`PrefixMethod.configure` makes it causal-LM on a decoder."""
    from peft import PrefixTuningConfig, TaskType

    return PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=p.num_virtual_tokens,
        prefix_projection=p.prefix_projection,
        encoder_hidden_size=p.encoder_hidden_size,
    )


def _prefix_forward(
    self: Any,
    input_ids: Any = None,
    attention_mask: Any = None,
    inputs_embeds: Any = None,
    labels: Any = None,
    output_attentions: Any = None,
    output_hidden_states: Any = None,
    return_dict: Any = None,
    **kwargs: Any,
) -> Any:
    """peft's ``_prefix_tuning_forward`` for transformers 5: the prefix goes in as ``cache``.

    ``attention_mask`` already covers the prefix (peft's ``forward`` prepends ones before calling this).
    """
    from peft.peft_model import _get_batch_size

    cache = self.get_prompt(_get_batch_size(input_ids, inputs_embeds))
    flags = {
        "output_attentions": output_attentions,
        "output_hidden_states": output_hidden_states,
        "return_dict": return_dict,
    }
    kwargs.update({k: v for k, v in flags.items() if v is not None})
    return self.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        inputs_embeds=inputs_embeds,
        labels=labels,
        cache=cache,
        **kwargs,
    )


def _causal_forward(
    self: Any,
    input_ids: Any = None,
    attention_mask: Any = None,
    inputs_embeds: Any = None,
    position_ids: Any = None,
    task_ids: Any = None,
    **kwargs: Any,
) -> Any:
    """peft's causal-LM prefix forward, with position ids counted from each sequence's first real token, past the
    prefix (see the module docstring), and the prefix passed as ``cache``."""
    import torch
    from peft.peft_model import _get_batch_size

    n = self.active_peft_config.num_virtual_tokens
    rows = _get_batch_size(input_ids, inputs_embeds)
    tokens = input_ids if input_ids is not None else inputs_embeds
    length = tokens.shape[1]
    if position_ids is None:
        position_ids = (
            (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            if attention_mask is not None
            else torch.arange(length, device=tokens.device).expand(rows, -1)
        )
    position_ids = position_ids + n  # the prefix holds positions 0..n-1, as the tokens it is initialised from did
    if attention_mask is not None:
        attention_mask = torch.cat((attention_mask.new_ones(rows, n), attention_mask), dim=1)
    return self.base_model(
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=self.get_prompt(rows, max_cache_len=length + n),
        **{k: v for k, v in kwargs.items() if v is not None},  # labels, output_* flags, logits_to_keep, ...
    )


def _prepare_for_generation(self: Any, *args: Any, task_ids: Any = None, **kwargs: Any) -> Any:
    """Each ``generate()`` step's model inputs, the prefix in the step's cache: put there before the first step (while
    the cache is empty) and kept by the cache from then on; the attention mask gets ones in front for it. Position
    ids are ``generate()``'s own (from 0 at each first real token), shifted past the prefix as in
    :func:`_causal_forward`."""
    import torch

    n = self.active_peft_config.num_virtual_tokens
    inputs = self.base_model_prepare_inputs_for_generation(*args, **kwargs)
    cache = inputs.get("cache")
    if cache is None:
        raise PeftkitError(
            "method 'prefix': generate() was called without a key/value cache (use_cache=False), which prefix tuning "
            "needs to hold its vectors; generate with use_cache=True"
        )
    ids = inputs["input_ids"] if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
    if not cache.get_seq_length():
        inputs["cache"] = self.get_prompt(ids.shape[0], max_cache_len=-1)
    mask = inputs.get("attention_mask")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
            raise PeftkitError(
                "method 'prefix': generate() built a 4-D attention mask (a compiled or static cache); prefix tuning "
                "generates with the default dynamic cache only (cache_implementation=None)"
            )
        inputs["attention_mask"] = torch.cat((mask.new_ones(mask.shape[0], n), mask), dim=1)
    if inputs.get("position_ids") is not None:
        inputs["position_ids"] = inputs["position_ids"] + n
    return inputs


def _accepts_cache(model: Any) -> bool:
    import inspect

    backbone = getattr(model, model.base_model_prefix, None) if hasattr(model, "base_model_prefix") else None
    return any("cache" in inspect.signature(m.forward).parameters for m in (model, backbone) if m is not None)


@dataclass
class PrefixMethod(PeftMethod):
    """PeftMethod that binds the transformers-5 prefix forward to the models it builds and loads."""

    task_heads: ClassVar[frozenset[str]] = frozenset({SEQUENCE_CLASSIFICATION, "causal-lm", "label-likelihood"})
    # why each objective a recipe may ask for is left out (the refusal names the objective it was given)
    task_heads_note: ClassVar[dict[str, str]] = {
        MULTIPLE_CHOICE: "peft builds one prefix per input row, while a multiple-choice model scores every "
        "(row, choice) pair as a row of its own, so the shapes do not meet",
    }

    def configure(self, model: Any, params: Any, ctx: ApplyContext) -> Any:
        from peft import TaskType

        config = self.make_config(params, ctx)
        if _generates(model):
            config.task_type = TaskType.CAUSAL_LM
        return config

    def apply(self, model: Any, params: Any, ctx: ApplyContext) -> Any:
        from peftkit.kit import MethodNotApplicable

        if not _accepts_cache(model):
            raise MethodNotApplicable(
                f"method 'prefix': {type(model).__name__} takes no key/value cache, which prefix tuning needs to "
                "prepend its vectors in every layer. Use lora, ia3 or adapters for this model"
            )
        model = _bind(super().apply(model, params, ctx))
        if not params.prefix_projection:  # with the MLP reparameterisation the embedding is no key/value
            _init_from_real_tokens(model)
        return model

    def load(self, base: Any, directory: Path) -> Any:
        return _bind(super().load(base, directory))


def _generates(model: Any) -> bool:
    can = getattr(model, "can_generate", None)
    return bool(can is not None and can())


def _bind(model: Any) -> Any:
    from peft import PeftModelForCausalLM

    if isinstance(model, PeftModelForCausalLM):
        model.forward = types.MethodType(_causal_forward, model)
        model.prepare_inputs_for_generation = types.MethodType(_prepare_for_generation, model)
    else:
        model._prefix_tuning_forward = types.MethodType(_prefix_forward, model)
    return model


def _init_from_real_tokens(model: Any) -> None:
    """Start the prefix as the keys and values the base model computes for a few real tokens.

    A random prefix can swamp attention so that every input gets nearly the same representation. On
    multilingual-e5-small the [CLS] state's spread across inputs is 0.056 without a prefix, 0.029 with
    peft's N(0, 1) prefix and 0.040 with this one; on TNEWS (2,000 rows, 1 epoch) a random prefix of
    std 1.6 stayed at the majority class (11.0%) where this init reached 46.2%. Li & Liang (2021)
    initialise with activations of real words; here the tokens are drawn at random (seeded) from the
    vocabulary, so no tokenizer is needed.
    """
    import torch
    from transformers import DynamicCache

    cfg, base = model.active_peft_config, model.get_base_model()
    emb = model.prompt_encoder[model.active_adapter].embedding.weight
    n = cfg.num_virtual_tokens
    vocab = base.get_input_embeddings().weight.shape[0]
    ids = torch.randint(vocab, (1, n), generator=torch.Generator().manual_seed(0)).to(emb.device)
    cache = DynamicCache(config=base.config)
    was_training = base.training
    base.eval()
    with torch.no_grad():
        getattr(base, base.base_model_prefix)(input_ids=ids, cache=cache)
        layers = getattr(cache, "layers", [])
        kv = [t for layer in layers[: cfg.num_layers] for t in (layer.keys, layer.values)]
        # (2L, heads, n, head_dim) → (n, 2L·heads·head_dim), the layout peft's get_prompt views it in
        same = kv and len({tuple(t.shape) for t in kv}) == 1  # hybrid caches (Gemma 3) differ per layer
        flat = torch.stack([t[0] for t in kv]).permute(2, 0, 1, 3).reshape(n, -1) if same else None
        if flat is None or len(kv) != 2 * cfg.num_layers or flat.shape != emb.shape:
            log.info("prefix: keeping peft's random prefix init (the model's key/value cache has another layout)")
        else:
            emb.copy_(flat.to(emb.dtype))
    base.train(was_training)


def facts(model: Any) -> dict[str, Any]:
    """Prefix length and the layers it is prepended in."""
    cfg = model.active_peft_config
    return {
        "num_virtual_tokens": cfg.num_virtual_tokens,
        "layers": cfg.num_layers,
        "prefix_projection": cfg.prefix_projection,
    }
