"""Per-architecture facts that methods share: which linear layers to target, where adapters go.

Keyed by ``config.model_type``. Patterns are full-match regexes over module names, so task heads
(``classifier``, ``pooler``, ``score``) are never matched by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

_ENC = r".*\.encoder\.layer\.\d+\."
_DEC = r".*\.layers\.\d+\."


@dataclass(frozen=True)
class Family:
    """Module-name patterns for one architecture family.

    Attributes:
        attention: the q/k/v (and output) projections.
        all_linear: every linear layer inside the transformer blocks.
        ffn_out: the block's feed-forward output module (Pfeiffer/Houlsby adapter after it).
        attn_out: the attention output module (Houlsby's first adapter after it).
        ffn: feed-forward modules (IA3 scales their inputs).
    """

    attention: str
    all_linear: str
    ffn_out: str
    attn_out: str
    ffn: str


ENCODER = Family(
    attention=_ENC + r"attention\.self\.(query|key|value)",
    all_linear=_ENC
    + r"(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)",
    ffn_out=_ENC + r"output",
    attn_out=_ENC + r"attention\.output",
    ffn=_ENC + r"output\.dense",
)
DECODER = Family(
    attention=_DEC + r"self_attn\.(q_proj|k_proj|v_proj)",
    all_linear=_DEC + r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))",
    ffn_out=_DEC + r"mlp",
    attn_out=_DEC + r"self_attn",
    ffn=_DEC + r"mlp\.down_proj",
)

FAMILIES: dict[str, Family] = {
    **{
        t: ENCODER
        for t in ("bert", "roberta", "xlm-roberta", "ernie", "electra", "camembert", "nezha", "megatron-bert")
    },
    **{t: DECODER for t in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3")},
}

HEAD_NAMES = ("classifier", "score", "pooler")


def family(model_type: str) -> Family:
    """The Family for a model type, or a PeftkitError that lists the supported ones."""
    from peftkit.errors import PeftkitError

    fam = FAMILIES.get(model_type)
    if fam is None:
        raise PeftkitError(
            f"no default target modules for model_type {model_type!r} (known: {', '.join(sorted(FAMILIES))}); "
            "set method.params.target_modules explicitly"
        )
    return fam


def resolve_targets(targets: list[str] | str | None, model_type: str) -> list[str] | str:
    """A method's ``target_modules`` param, made concrete for one architecture (for a peft config).

    Args:
        targets: ``None`` or ``"all-linear"`` (every linear layer inside the transformer blocks, never the
            task head), ``"attention"`` (the q/k/v projections), or a list of module names / one full-match
            regex, which pass through unchanged.
        model_type: ``ctx.model_type`` (the model's ``config.model_type``, e.g. ``bert``, ``llama``).

    Returns:
        What peft's ``target_modules`` takes: a full-match regex over module names, or the list given.

    Raises:
        PeftkitError: ``all-linear`` / ``attention`` for a model type without known patterns (see
            ``FAMILIES``); the message asks for explicit ``target_modules``.
    """
    if targets is None or targets == "all-linear":
        return family(model_type).all_linear
    if targets == "attention":
        return family(model_type).attention
    return targets
