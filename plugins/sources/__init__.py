"""Built-in model sources: ``local:/path`` (or a bare path), ``hub:org/name`` (Hugging Face Hub) and ``run:<folder>``
(a finished run, merged into its base)."""

from __future__ import annotations

import os
from pathlib import Path

from peftkit import ModelSourceError, hookimpl
from peftkit.kit import folder_model_type
from peftkit_plugins.sources.run import RunSource


class LocalSource:
    scheme = "local"
    summary = "A Hugging Face model folder on disk (config.json, weights, tokenizer)."

    def check(self, reference: str) -> str | None:
        p = Path(os.path.expanduser(reference))
        if not p.is_dir():
            return f"local model folder {reference!r} does not exist"
        if not (p / "config.json").is_file():
            return f"{reference!r} has no config.json; point model.source at a Hugging Face model folder"
        return None

    def model_type(self, reference: str, *, revision: str | None = None) -> str | None:
        """The folder's ``model_type`` from its config.json."""
        return folder_model_type(Path(os.path.expanduser(reference)))

    def resolve(self, reference: str, *, revision: str | None = None) -> Path:
        msg = self.check(reference)
        if msg:
            raise ModelSourceError(f"model.source: {msg}")
        return Path(os.path.expanduser(reference)).resolve()


class HubSource:
    scheme = "hub"
    summary = "A model id on the Hugging Face Hub (downloaded once into the HF cache); needs a network."

    def check(self, reference: str) -> str | None:
        if not reference or reference.count("/") > 1 or reference.startswith("/"):
            return f"{reference!r} is not a hub model id (expected 'name' or 'org/name')"
        return None

    def model_type(self, reference: str, *, revision: str | None = None) -> str | None:
        """The ``model_type`` of a model already in the HF cache (its config.json there); None when it is not."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(reference, "config.json", revision=revision)
        return folder_model_type(Path(found).parent) if isinstance(found, str) else None

    def resolve(self, reference: str, *, revision: str | None = None) -> Path:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
        try:
            return Path(snapshot_download(reference, revision=revision, allow_patterns=patterns))
        except Exception as exc:  # offline, unknown id, auth ...
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            hint = (
                "HF_HUB_OFFLINE=1 is set, so only models already in the HF cache load"
                if offline
                else "this machine may have no route to the hub"
            )
            raise ModelSourceError(
                f"model.source: cannot download {reference!r} from the Hugging Face Hub ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); {hint}. Offline, copy the model folder here and use "
                f"model.source: local:/path/to/folder, or a packaged model such as packaged:multilingual-e5-small"
            ) from None


@hookimpl
def peftkit_register_model_sources():
    return [LocalSource(), HubSource(), RunSource()]
