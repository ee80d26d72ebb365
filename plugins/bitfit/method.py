"""BitFit (Ben Zaken et al., 2022): only the bias terms (and the task head) train."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit import ApplyContext
from peftkit.kit import MethodNotApplicable
from peftkit_plugins.bitfit.config import BitFitParams

WEIGHTS = "bitfit.safetensors"


def _in_head(name: str, heads: list[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in heads)


def trainable_names(model: Any, params: BitFitParams, heads: list[str]) -> list[str]:
    """Biases (of linear layers, and of LayerNorms unless excluded) plus every head parameter."""
    import torch

    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    out = []
    for name, _ in model.named_parameters():
        module = name.rpartition(".")[0]
        if _in_head(name, heads) or (name.endswith(".bias") and (params.include_layernorm or module not in norms)):
            out.append(name)
    return out


@dataclass
class BitFitMethod:
    """BitFit (Method protocol). Saves only what trained, as safetensors."""

    name: str = "bitfit"
    summary: str = (
        "BitFit: only bias terms (and the task head) train; tiny checkpoints; needs a model with biases (BERT, Qwen2)."
    )
    params_model: type = BitFitParams
    # Ben Zaken et al. searched 1e-4..1e-3; biases move little per step, so short runs want the top of the range.
    default_lr: float = 1e-3
    can_merge: bool = True  # biases already live in the base layers: the trained model is a plain model
    quantized_bits: frozenset = field(default_factory=frozenset)
    quantization_note: str = (
        "BitFit's premise is exact pretrained weights with only the biases shifted; on a 4/8-bit base the weights "
        "carry quantization error that bias terms alone cannot compensate (QLoRA pairs a quantized base with "
        "low-rank adapters for that reason)"
    )
    trains_base_params: str = r".*\.bias"

    def apply(self, model: Any, params: BitFitParams, ctx: ApplyContext) -> Any:
        if ctx.quantization_bits:  # validate refuses this first; kept for direct API use
            raise MethodNotApplicable(
                f"method 'bitfit' cannot train a {ctx.quantization_bits}-bit base: {self.quantization_note}"
            )
        names = set(trainable_names(model, params, ctx.head_modules))
        if not any(not _in_head(n, ctx.head_modules) for n in names):
            raise MethodNotApplicable(
                f"method 'bitfit': the {ctx.model_type or 'given'} model has no bias parameters outside the task head "
                "(Llama/Gemma-style models have none), so BitFit would train only the classifier. Use lora, ia3 or "
                "adapters for this model, or a model with biases (BERT family, Qwen2)"
            )
        for name, p in model.named_parameters():
            p.requires_grad = name in names
        return model

    def save(self, model: Any, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(directory / WEIGHTS), metadata={"method": "bitfit"})
        (directory / "bitfit.json").write_text(json.dumps({"method": "bitfit", "parameters": sorted(state)}, indent=1))

    def load(self, base: Any, directory: Path) -> Any:
        from peftkit.kit import load_safetensors_into

        loaded = set(load_safetensors_into(base, Path(directory), strict=False))
        for name, p in base.named_parameters():
            p.requires_grad = name in loaded  # so a reloaded model trains the same set again
        return base

    def merge(self, model: Any) -> Any:
        return model

    def facts(self, model: Any) -> dict[str, Any]:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        return {"bias_tensors": sum(1 for n in names if n.endswith(".bias")), "trained_tensors": len(names)}
