"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021) as a peft tuner; not mergeable."""

from peftkit import hookimpl
from peftkit_plugins.adapters.config import MERGE_NOTE, AdapterParams
from peftkit_plugins.adapters.method import AdaptersMethod, facts, make_config


@hookimpl
def peftkit_register_methods():
    return [
        AdaptersMethod(
            name="adapters",
            summary="Bottleneck adapters: houlsby (after attention + FFN) or pfeiffer (after FFN); near-identity init; not mergeable.",
            params_model=AdapterParams,
            make_config=make_config,
            # Houlsby et al. tuned 1e-4..1e-3 over many epochs; short runs of small encoders need the top of that range.
            default_lr=1e-3,
            can_merge=False,
            merge_note=MERGE_NOTE,
            facts_fn=facts,
        )
    ]
