"""Bottleneck adapters as a peft tuner, registered through peft's own mechanism.

peft has no Houlsby/Pfeiffer adapters and AdapterHub's ``adapters`` cannot be installed beside
transformers 5, so this module adds one: a :class:`BottleneckLayer` wraps a projection (a linear
layer) and adds ``up(act(down(h)))`` to its output ``h`` — the adapter sits after the projection and
before the block's residual/LayerNorm, where Houlsby et al. (2019) put it. Registering with
``register_peft_method`` makes ``get_peft_model``, ``save_pretrained`` and ``PeftModel.from_pretrained``
work unchanged, so saved adapters are ordinary peft folders (``adapter_config.json`` +
``adapter_model.safetensors``) whose ``peft_type`` is ``PEFTKIT_BOTTLENECK``.

Imported lazily (it imports torch and peft); call :func:`register` before building or loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils.peft_types import PeftType, register_peft_method
from torch import nn

from peftkit_plugins.adapters.config import MERGE_NOTE

PEFT_NAME = "peftkit_bottleneck"  # namespaced, so a future peft method of the same idea cannot clash
PREFIX = "bottleneck_"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class BottleneckConfig(PeftConfig):
    """peft config of a bottleneck adapter (what ``adapter_config.json`` holds)."""

    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Projections to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to skip."})
    bottleneck_size: int | None = field(
        default=None, metadata={"help": "Adapter width; else hidden // reduction_factor."}
    )
    reduction_factor: int = field(default=16, metadata={"help": "hidden / bottleneck when bottleneck_size is None."})
    non_linearity: str = field(default="relu", metadata={"help": "relu, gelu, swish or tanh."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input."})
    scaling: float = field(default=1.0, metadata={"help": "Multiplier on the adapter output."})
    init_std: float = field(default=1e-2, metadata={"help": "Std of the down-projection init (up starts at zero)."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Task head modules to train and save."})
    placement: str = field(default="pfeiffer", metadata={"help": "houlsby or pfeiffer (informational)."})
    attn_modules: str | None = field(default=None, metadata={"help": "Regex of the targets after attention (houlsby)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType[PEFT_NAME.upper()]


def adapter_width(hidden: int, config: BottleneckConfig) -> int:
    """The bottleneck size for a projection of ``hidden`` outputs."""
    if config.bottleneck_size:
        return int(config.bottleneck_size)
    return max(1, math.ceil(hidden / config.reduction_factor))


class BottleneckLayer(nn.Module, BaseTunerLayer):
    """A projection followed by residual bottleneck adapters: ``h + s·up(act(down(drop(h))))``."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act", "bottleneck_dropout", "bottleneck_scaling")

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: BottleneckConfig) -> None:
        super().__init__()
        hidden = getattr(base_layer, "out_features", None)
        if not isinstance(hidden, int):
            raise ValueError(
                f"bottleneck adapters wrap linear projections (with out_features); got {type(base_layer).__name__}. "
                "Point method.params.attn_modules / ffn_modules at linear layers"
            )
        self.base_layer = base_layer
        self.out_features = hidden
        self.bottleneck_down = nn.ModuleDict()
        self.bottleneck_up = nn.ModuleDict()
        self.bottleneck_act = nn.ModuleDict()
        self.bottleneck_dropout = nn.ModuleDict()
        self.bottleneck_scaling: dict[str, float] = {}
        self._active_adapter = adapter_name
        self.merged_adapters: list[str] = []
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: BottleneckConfig) -> None:
        """Create the adapter ``adapter_name`` (near-identity: the up-projection starts at zero)."""
        width = adapter_width(self.out_features, config)
        down, up = nn.Linear(self.out_features, width), nn.Linear(width, self.out_features)
        nn.init.normal_(down.weight, std=config.init_std)
        nn.init.zeros_(down.bias)
        nn.init.zeros_(up.weight)  # zero up-projection: the adapted model starts equal to the base
        nn.init.zeros_(up.bias)
        weight = self.get_base_layer().weight
        dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32  # quantized bases store ints
        self.bottleneck_down[adapter_name] = down.to(weight.device, dtype)
        self.bottleneck_up[adapter_name] = up.to(weight.device, dtype)
        self.bottleneck_act[adapter_name] = ACTIVATIONS[config.non_linearity]()
        self.bottleneck_dropout[adapter_name] = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.bottleneck_scaling[adapter_name] = config.scaling
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return out
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down = self.bottleneck_down[name]
            h = self.bottleneck_dropout[name](out.to(down.weight.dtype))
            delta = self.bottleneck_up[name](self.bottleneck_act[name](down(h)))
            out = out + (delta * self.bottleneck_scaling[name]).to(out.dtype)
        return out

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(MERGE_NOTE)

    def unmerge(self) -> None:
        """Nothing is ever merged, so there is nothing to undo."""


class BottleneckModel(BaseTuner):
    """Injects :class:`BottleneckLayer` s into the modules named by ``target_modules``."""

    prefix: str = PREFIX
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}  # peftkit always passes explicit targets

    def _create_and_replace(
        self,
        peft_config: BottleneckConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, peft_config)
            return
        new = BottleneckLayer(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)


def _extend_peft_type(name: str) -> None:
    """Add ``name`` to peft's PeftType enum, which register_peft_method requires.

    peft keys its registries by PeftType members and offers no public way to add one outside its own
    source tree, so the member is added the way Enum builds members itself.
    """
    key = name.upper()
    if key in PeftType.__members__:
        return
    member = str.__new__(PeftType, key)
    member._name_, member._value_ = key, key
    member.__objclass__ = PeftType
    type.__setattr__(PeftType, key, member)  # EnumType.__setattr__ would refuse new members
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)


def register() -> None:
    """Register the bottleneck tuner with peft (idempotent)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    _extend_peft_type(PEFT_NAME)
    if PeftType[PEFT_NAME.upper()] in PEFT_TYPE_TO_TUNER_MAPPING:
        return
    register_peft_method(name=PEFT_NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel, prefix=PREFIX)
