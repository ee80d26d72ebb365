"""A cache of built model folders that is safe under concurrency and interruption (``peftkit.kit.cache``).

Model sources that make a folder on first use (the packaged e5 conversion, a finished run merged into its
base for ``run:``) build it through :func:`materialise`, keyed by what it is made from.

Layout under ``$PEFTKIT_CACHE`` (default ``~/.cache/peftkit``)::

    models/
      multilingual-e5-small-<key>/            a finished folder (key = hash of source sha256 + converter version)
        config.json, model.safetensors, tokenizer.json, ...
        .peftkit-complete.json                the marker, written LAST: source sha256/size, converter version, file sizes
      multilingual-e5-small-<key>.lock        fcntl.flock'ed while a process converts
      .multilingual-e5-small-<key>.tmp-XXXX   a conversion in progress (or an interrupted one, removed later)

A folder is used only if its marker matches the source file, the converter version and the sizes
of the files it lists. A conversion writes into a temporary folder beside the final one and
``os.replace`` s it into place, so a reader never sees half a folder; a second process that wants
the same folder waits on the lock and then reuses the first one's result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit.errors import ModelSourceError

log = logging.getLogger("peftkit")

MARKER = ".peftkit-complete.json"
MARKER_FORMAT = 1


def cache_root() -> Path:
    """``$PEFTKIT_CACHE`` or ``~/.cache/peftkit``."""
    return Path(os.environ.get("PEFTKIT_CACHE") or Path.home() / ".cache" / "peftkit").expanduser()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """What a cached folder is built from; its identity in the cache.

    Attributes:
        name: the model's name, the folder's prefix (``multilingual-e5-small``).
        source: the file the folder is converted from.
        source_sha256, source_size: the source's content, checked against the marker.
        converter_version: version of the conversion code; a change invalidates old folders.
    """

    name: str
    source: Path
    source_sha256: str
    source_size: int
    converter_version: str

    @classmethod
    def for_file(cls, name: str, source: Path, converter_version: str) -> Entry:
        return cls(name, source, sha256_file(source), source.stat().st_size, converter_version)

    @property
    def key(self) -> str:
        raw = f"{self.source_sha256}:{self.source_size}:{self.converter_version}".encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.key}"

    def marker(self, files: dict[str, int]) -> dict[str, Any]:
        return {
            "format": MARKER_FORMAT,
            "name": self.name,
            "source": str(self.source),
            "source_sha256": self.source_sha256,
            "source_size": self.source_size,
            "converter_version": self.converter_version,
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def is_complete(folder: Path, entry: Entry) -> bool:
    """Whether ``folder`` holds a finished conversion of ``entry`` (marker present, matching, files intact)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict) or not marker["files"]:
        return False
    for field in ("source_sha256", "source_size", "converter_version"):
        if marker.get(field) != getattr(entry, field):
            return False
    for rel, size in marker["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``fcntl.flock`` on ``path`` (blocks until free; released on exit or process death)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _temp_prefix(entry: Entry) -> str:
    return f".{entry.folder_name}.tmp-"


def _clean_stale(models: Path, entry: Entry) -> None:
    """Remove temp folders of ``entry`` left by interrupted conversions (call with the lock held)."""
    for stale in models.glob(_temp_prefix(entry) + "*"):
        log.info("removing an interrupted conversion: %s", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _write_marker(folder: Path, entry: Entry) -> None:
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    tmp = folder / (MARKER + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(entry.marker(files), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MARKER)


def _build(models: Path, entry: Entry, build: Callable[[Path], None]) -> Path:
    final = models / entry.folder_name
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(entry), dir=models))
    try:
        build(tmp)
        _write_marker(tmp, entry)  # last: a folder without it is never used
        tmp.chmod(0o755)  # mkdtemp makes it private; a finished model folder is readable like any other
        for path in tmp.rglob("*"):  # safetensors writes its files 0600 too
            path.chmod(0o755 if path.is_dir() else 0o644)
        if final.exists():  # an incomplete or outdated folder (checked by the caller): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def materialise(entry: Entry, build: Callable[[Path], None], root: Path | None = None) -> Path:
    """The finished cache folder for ``entry``, building it with ``build(tmp_dir)`` the first time.

    Args:
        entry: what the folder is made from (see :class:`Entry`).
        build: writes the folder's files into the empty directory it is given.
        root: the cache root; None = :func:`cache_root`.
    """
    models = (root or cache_root()) / "models"
    final = models / entry.folder_name
    if is_complete(final, entry):  # the common case: no lock needed to read a finished folder
        return final
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelSourceError(
            f"cannot create the model cache {models} ({exc}); set PEFTKIT_CACHE to a writable folder"
        ) from exc
    with file_lock(models / f"{entry.folder_name}.lock"):
        if is_complete(final, entry):  # another process finished it while we waited
            log.info("reusing %s, converted by another process", final)
            return final
        _clean_stale(models, entry)
        start = time.perf_counter()
        log.info("converting %s into %s (first use; reused afterwards)", entry.source, final)
        path = _build(models, entry, build)
        log.info("converted %s in %.1f s", entry.name, time.perf_counter() - start)
        return path
