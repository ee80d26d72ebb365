"""(IA)³ (Liu et al., 2022) through peft: learned vectors rescale keys, values and FFN activations; mergeable."""

from peftkit import hookimpl
from peftkit.kit import PeftMethod
from peftkit_plugins.ia3.config import IA3Params
from peftkit_plugins.ia3.method import facts, make_config


@hookimpl
def peftkit_register_methods():
    return [
        PeftMethod(
            name="ia3",
            summary="(IA)³: learned scaling vectors on keys, values and FFN activations; fewest parameters; mergeable.",
            params_model=IA3Params,
            make_config=make_config,
            # T-Few (Liu et al., 2022) trains (IA)³ at 3e-3; the vectors start at 1 and need large steps to move.
            default_lr=3e-3,
            facts_fn=facts,
        )
    ]
