"""Full fine-tuning: every parameter trains; the whole model is saved as safetensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit import ApplyContext, PeftkitError
from peftkit.kit import load_safetensors_into
from peftkit_plugins.full.config import FullParams


@dataclass
class FullMethod:
    """Full fine-tuning (Method protocol)."""

    name: str = "full"
    summary: str = "Full fine-tuning: every weight trains; saved as model.safetensors (a plain HF folder)."
    params_model: type = FullParams
    # BERT's fine-tuning grid is 2e-5..5e-5 (Devlin et al., 2019); adapter-style rates (1e-3) destroy pretrained weights.
    default_lr: float = 3e-5
    can_merge: bool = True  # nothing to merge: the trained model already is a plain model
    quantized_bits: frozenset = field(default_factory=frozenset)
    quantization_note: str = (
        "full fine-tuning updates every base weight, and bitsandbytes 4/8-bit weights are frozen integers that "
        "cannot take gradient updates"
    )
    trains_base_params: str = r".*"

    def apply(self, model: Any, params: FullParams, ctx: ApplyContext) -> Any:
        if ctx.quantization_bits:
            raise PeftkitError(
                f"method 'full' cannot train a {ctx.quantization_bits}-bit base: {self.quantization_note}"
            )
        emb = model.get_input_embeddings().weight if params.freeze_embeddings else None
        for p in model.parameters():
            p.requires_grad = p is not emb
        return model

    def save(self, model: Any, directory: Path) -> None:
        # save_pretrained writes config.json + model.safetensors: the folder loads with from_pretrained as is
        model.save_pretrained(str(directory), safe_serialization=True)

    def load(self, base: Any, directory: Path) -> Any:
        load_safetensors_into(base, Path(directory), strict=True)
        return base

    def merge(self, model: Any) -> Any:
        return model

    def facts(self, model: Any) -> dict[str, Any]:
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        return {"weights_file": "model.safetensors", "frozen_parameters": frozen}
