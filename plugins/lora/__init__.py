"""LoRA (Hu et al., 2021) through peft: low-rank updates W + (alpha/r)·B·A on chosen linear layers."""

from peftkit import hookimpl
from peftkit.kit import PeftMethod
from peftkit_plugins.lora.config import LoraParams
from peftkit_plugins.lora.method import make_config


@hookimpl
def peftkit_register_methods():
    return [
        PeftMethod(
            name="lora",
            summary="LoRA: trainable low-rank updates on linear layers (DoRA, rsLoRA, PiSSA options); mergeable.",
            params_model=LoraParams,
            make_config=make_config,
            default_lr=1e-3,
        )
    ]
