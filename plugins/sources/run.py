"""``model.source: run:<folder>``: a finished peftkit run as the base of the next recipe (pretrain → fine-tune).

The run's base with its method merged in (or, for full fine-tuning, its weights) is written once as a plain
transformers folder into the model cache (:mod:`peftkit.kit.cache`: locked, atomic, reused), keyed by the run's
content: its resolved recipe and every file of its ``model/`` folder. Training the run again changes the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from peftkit import ModelSourceError, PeftkitError

log = logging.getLogger("peftkit")

EXPORT_VERSION = "1"  # bump when the exported folder changes; old cache folders are then rebuilt


def content_key(run: Path) -> tuple[str, int]:
    """``(sha256, bytes)`` over the run's recipe.yaml and its model/ files (names and contents)."""
    digest, size = hashlib.sha256(), 0
    files = [run / "recipe.yaml", *sorted(p for p in (run / "model").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(run)).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def export_run(run: Path, directory: Path) -> None:
    """Write the run's trained model, merged into a plain transformers model, and its tokenizer to ``directory``."""
    from peftkit import load_run

    setup, model = load_run(run)
    if setup.recipe.model.quantization is not None:
        raise ModelSourceError(
            f"model.source: run:{run} trained on a {setup.recipe.model.quantization.bits}-bit base, which cannot be "
            "merged without re-quantizing it; retrain it with model.quantization: null to use it as a base"
        )
    try:
        merged = setup.method.merge(model)
    except PeftkitError as exc:
        raise ModelSourceError(f"model.source: run:{run} cannot be used as a base: {exc}") from None
    merged.save_pretrained(str(directory), safe_serialization=True)
    setup.tokenizer.save_pretrained(str(directory))


class RunSource:
    """The ``run:`` scheme (ModelSource protocol)."""

    scheme = "run"
    summary = "A finished peftkit run folder: its base with the method merged (or its full weights), cached."

    def check(self, reference: str) -> str | None:
        run = Path(os.path.expanduser(reference))
        if not run.is_dir():
            where = "" if run.is_absolute() else f" (relative paths are read from the current folder, {Path.cwd()})"
            return f"run folder {reference!r} does not exist{where}"
        missing = [n for n in ("recipe.yaml", "model") if not (run / n).exists()]
        if missing:
            return f"{reference!r} is not a peftkit run folder (it has no {' and no '.join(missing)})"
        if not (run / "metrics.json").is_file():
            return (
                f"run {reference!r} has not finished (no metrics.json); finish it (peftkit run --resume) "
                "before training on top of it"
            )
        return None

    def resolve(self, reference: str, *, revision: str | None = None) -> Path:
        from peftkit.kit.cache import Entry, materialise

        problem = self.check(reference)
        if problem:
            raise ModelSourceError(f"model.source: {problem}")
        run = Path(os.path.expanduser(reference)).resolve()
        sha, size = content_key(run)
        name = "run-" + re.sub(r"[^A-Za-z0-9._-]+", "-", run.name)
        entry = Entry(name, run, sha, size, EXPORT_VERSION)
        return materialise(entry, lambda tmp: export_run(run, tmp))
