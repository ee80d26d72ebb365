"""The model cache lives in :mod:`peftkit.kit.cache` (``run:`` folders are built through it too); these are
its names, as the packaged source has always imported them."""

from peftkit.kit.cache import MARKER, Entry, cache_root, file_lock, is_complete, materialise, sha256_file

__all__ = ["MARKER", "Entry", "cache_root", "file_lock", "is_complete", "materialise", "sha256_file"]
