"""Helpers for method plugins built on peft (composition, not a base class).

A peft-backed method is a :class:`PeftMethod` holding a function that turns the validated params into
a ``peft.PeftConfig``; apply/save/load/merge then go through peft, so every adapter peftkit writes
loads with ``PeftModel.from_pretrained``. The task head (``ctx.head_modules``) is always added to
``modules_to_save``: an adapter without its classifier reloads to random accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from peftkit.errors import PeftkitError
from peftkit.plugin.contracts import ApplyContext


class MethodNotApplicable(PeftkitError):
    """A method cannot be applied to this architecture (e.g. BitFit on a model without biases).

    Raised by ``Method.apply``; the conformance suite skips such a (method, model) pair with the message.
    """


def linear_names(model: Any) -> list[str]:
    """The distinct short names of a model's linear layers (``query``, ``dense``, ...), for error messages."""
    import torch

    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name}
    )


def count_parameters(model: Any) -> dict[str, Any]:
    """Trainable and total parameters; 4-bit packed weights count as the values they hold."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total, "percent": round(100.0 * trainable / max(total, 1), 4)}


def heads_with(existing: Any, ctx: ApplyContext) -> list[str]:
    """``modules_to_save`` that always contains the task head."""
    out = list(existing or [])
    out += [h for h in ctx.head_modules if h not in out]
    return out


@dataclass
class PeftMethod:
    """A method whose model is a ``peft.PeftModel`` built from ``make_config(params, ctx)``."""

    name: str
    summary: str
    params_model: type[BaseModel]
    make_config: Callable[[Any, ApplyContext], Any]
    default_lr: float = 1e-3
    can_merge: bool = True
    quantized_bits: frozenset[int] = field(default_factory=lambda: frozenset({4, 8}))
    merge_note: str = ""
    facts_fn: Callable[[Any], dict[str, Any]] | None = None

    def configure(self, model: Any, params: Any, ctx: ApplyContext) -> Any:
        """The ``peft.PeftConfig`` to apply to ``model``: ``make_config(params, ctx)``. A method whose config
        depends on the model itself (e.g. on whether it generates text) overrides this."""
        return self.make_config(params, ctx)

    def apply(self, model: Any, params: Any, ctx: ApplyContext) -> Any:
        from peft import get_peft_model

        config = self.configure(model, params, ctx)
        if hasattr(config, "modules_to_save"):
            config.modules_to_save = heads_with(config.modules_to_save, ctx)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            if type(exc).__name__ != "NoMatchingPeftModuleError" and "not found in the base model" not in str(exc):
                raise
            raise PeftkitError(
                f"method.params.target_modules: {getattr(params, 'target_modules', None)!r} matches no layer of this "
                f"{ctx.model_type} model; its linear layers are named {', '.join(linear_names(model))}. Use some of "
                "these names, a regex over full module names, 'attention' or 'all-linear'"
            ) from None

    def save(self, model: Any, directory: Path) -> None:
        model.save_pretrained(str(directory))

    def load(self, base: Any, directory: Path) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(directory))

    def merge(self, model: Any) -> Any:
        if not self.can_merge:
            raise PeftkitError(
                f"method {self.name!r} cannot be merged into the base weights. {self.merge_note}".strip()
            )
        if getattr(getattr(model, "config", None), "quantization_config", None) is not None or _is_4bit(model):
            raise PeftkitError(
                "cannot merge into a quantized base: the result would be re-quantized and lose accuracy. "
                "Load the base unquantized (model.quantization: null), apply the saved adapter, merge, and export that"
            )
        _unwrap_saved_modules(model)
        return model.merge_and_unload()

    def facts(self, model: Any) -> dict[str, Any]:
        return self.facts_fn(model) if self.facts_fn else {}


def _unwrap_saved_modules(model: Any) -> None:
    """Put each trained ``modules_to_save`` copy (the task head) in place of its peft wrapper.

    peft 0.21's generic merge (IA3 and other tuners without their own ``_replace_module``) copies ``.weight``
    from the wrapper onto the unwrapped module and fails for a head without one (BERT's pooler).
    """
    from peft.utils.other import ModulesToSaveWrapper

    inner = model.get_base_model()
    for name, mod in list(inner.named_modules()):
        if isinstance(mod, ModulesToSaveWrapper):
            active = [a for a in mod.active_adapters if a in mod.modules_to_save]
            parent, _, child = name.rpartition(".")
            setattr(
                inner.get_submodule(parent), child, mod.modules_to_save[active[0]] if active else mod.original_module
            )


def _is_4bit(model: Any) -> bool:
    return any(p.__class__.__name__ in {"Params4bit", "Int8Params"} for p in model.parameters())
