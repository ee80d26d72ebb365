"""LNFit: fine-tune only the LayerNorm scales and shifts (plus the task head).

The norms' scales and shifts re-weight every hidden feature at every layer, yet they are only two
vectors per norm: about 19k parameters in a 12-layer model of width 384. The trained tensors are
saved as one safetensors file, so a run's output is small and loads onto a fresh base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peftkit import ApplyContext, PeftkitError

WEIGHTS = "lnfit.safetensors"
MANIFEST = "lnfit.json"


class LNFitParams(BaseModel):
    """``method.params`` for ``lnfit``."""

    model_config = ConfigDict(extra="forbid")

    bias: bool = Field(True, description="Also train the LayerNorm shifts (biases), not only the scales.")
    embeddings: bool = Field(True, description="Also train the LayerNorm after the embeddings.")


def _is_norm(module: Any) -> bool:
    # LayerNorm in encoders, RMSNorm (LlamaRMSNorm, Qwen2RMSNorm, ...) in decoders
    name = type(module).__name__
    return name.endswith("LayerNorm") or name.endswith("RMSNorm")


def norm_names(model: Any, params: LNFitParams) -> list[str]:
    """Names of the norm parameters LNFit trains: scales, and shifts when ``params.bias``."""
    names = []
    for mod_name, module in model.named_modules():
        if _is_norm(module) and (params.embeddings or "embeddings" not in mod_name):
            for pname, _ in module.named_parameters(recurse=False):
                if pname == "weight" or (pname == "bias" and params.bias):
                    names.append(f"{mod_name}.{pname}")
    return names


def head_names(model: Any, head_modules: list[str]) -> list[str]:
    """Every parameter of the task head (classifier, and a pooler the checkpoint lacked)."""
    return [f"{head}.{pname}" for head in head_modules for pname, _ in model.get_submodule(head).named_parameters()]


class LNFit:
    """The Method object peftkit calls; see :class:`peftkit.plugin.contracts.Method`."""

    name = "lnfit"
    summary = "LNFit: train only LayerNorm/RMSNorm scales and shifts plus the task head (example plugin)."
    params_model = LNFitParams
    default_lr = 1e-3
    can_merge = True  # the trained tensors live in the model itself: nothing to fold in
    quantized_bits: frozenset[int] = frozenset()
    # Base parameters this method trains on purpose; the conformance suite checks that exactly these
    # (plus the task head) train. The norm modules' names end in LayerNorm, layernorm or norm.
    trains_base_params = r"(?i).*norm\.(weight|bias)"

    def apply(self, model: Any, params: LNFitParams, ctx: ApplyContext) -> Any:
        norms = norm_names(model, params)
        if not norms:
            raise PeftkitError(
                f"lnfit: the model ({ctx.model_type or type(model).__name__}) has no LayerNorm or RMSNorm "
                "modules to train; use another method"
            )
        names = set(norms) | set(head_names(model, ctx.head_modules))
        for name, p in model.named_parameters():
            p.requires_grad_(name in names)
        return model

    def save(self, model: Any, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(directory / WEIGHTS))
        (directory / MANIFEST).write_text(json.dumps({"method": self.name, "tensors": sorted(tensors)}, indent=2))

    def load(self, base: Any, directory: Path) -> Any:
        from safetensors.torch import load_file

        path = Path(directory) / WEIGHTS
        if not path.is_file():
            raise PeftkitError(f"{directory} holds no {WEIGHTS}; it was not written by the lnfit method")
        tensors = load_file(str(path))
        own = dict(base.named_parameters())
        unknown = sorted(set(tensors) - set(own))
        if unknown:
            raise PeftkitError(
                f"{path}: tensors {unknown[:3]} do not exist in the base model; was it trained on another model?"
            )
        for name, p in own.items():
            p.requires_grad_(name in tensors)
        base.load_state_dict(tensors, strict=False)
        return base

    def merge(self, model: Any) -> Any:
        return model

    def facts(self, model: Any) -> dict[str, Any]:
        tensors = [n for n, p in model.named_parameters() if p.requires_grad]
        return {"trained_tensors": len(tensors)}
