"""Prefix tuning (Li & Liang, 2021) through peft: learned key/value prefixes in every layer; not mergeable."""

from peftkit import hookimpl
from peftkit_plugins.prefix.config import PrefixParams
from peftkit_plugins.prefix.method import PrefixMethod, facts, make_config

MERGE_NOTE = (
    "Prefix tuning adds key/value vectors that every input attends to; they are not a change of any weight matrix, "
    "so there is nothing to fold into the base. Keep the base + prefix"
)


@hookimpl
def peftkit_register_methods():
    return [
        PrefixMethod(
            name="prefix",
            summary="Prefix tuning: learned key/value vectors prepended in every attention layer; BERT and decoders; not mergeable.",
            params_model=PrefixParams,
            make_config=make_config,
            # P-Tuning v2 (Liu et al., 2022) trains prefixes for classification at 5e-3..1e-2: the prefix starts random.
            default_lr=1e-2,
            can_merge=False,
            merge_note=MERGE_NOTE,
            facts_fn=facts,
        )
    ]
