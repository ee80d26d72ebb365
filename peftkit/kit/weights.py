"""Weights on disk for method plugins: load a folder of safetensors into a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError


def load_safetensors_into(base: Any, directory: Path, *, strict: bool) -> list[str]:
    """Load every ``*.safetensors`` in ``directory`` into ``base``; return the names loaded.

    Raises:
        PeftkitError: a saved tensor matches no parameter of ``base`` (another model or label count), or
            (``strict``) a parameter of ``base`` was not in the files.
    """
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise PeftkitError(f"{directory} holds no *.safetensors weights; was it written by this method's save?")
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(str(f)))
    result = base.load_state_dict(state, strict=False)
    # a missing key that is not a distinct parameter is a tied duplicate save_pretrained left out on purpose
    own = {n for n, _ in base.named_parameters(remove_duplicate=True)}
    missing = [k for k in result.missing_keys if k in own] if strict else []
    if result.unexpected_keys or missing:
        raise PeftkitError(
            f"{directory}: saved weights do not fit the base model (unexpected: {result.unexpected_keys[:5]}, "
            f"missing: {missing[:5]}); load it with the same model.source and task labels it was trained with"
        )
    return list(state)
