"""Where things are: model source references (``scheme:rest``, a bare path) and their checks, and whether
``output_dir`` can be a run folder here — all from the file system, nothing created, nothing imported."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from peftkit.recipe.problems import _closest, cut, shown


def os_problem(exc: OSError) -> str:
    """One line for an OS error met while checking a path (its message, the path cut short)."""
    name = f" ({cut(str(exc.filename), 120)})" if exc.filename else ""
    return f"cannot check it here: {exc.strerror or type(exc).__name__}{name}"


def _check_output_dir(output_dir: str) -> list[tuple[tuple, str]]:
    """``output_dir`` is a folder, or can be made one: not an existing file, not under a file, writable by this
    user (``run`` would otherwise fail with an OS traceback after loading the model). Only ``stat`` calls."""
    loc = ("output_dir",)
    try:
        path = Path(output_dir).expanduser().absolute()
        here = path
        while True:
            try:
                mode = os.stat(here).st_mode
                break
            except (FileNotFoundError, NotADirectoryError):  # walk up to what exists
                if here.parent == here:
                    return []
                here = here.parent
    except OSError as exc:  # a name too long, a loop of symlinks, no permission to look
        return [(loc, f"{os_problem(exc)}; choose another folder")]
    except ValueError:
        return [(loc, "not a usable path (it holds a NUL character)")]
    if not stat.S_ISDIR(mode):
        what = "is an existing file" if here == path else f"is under {cut(str(here), 120)}, which is a file"
        return [(loc, f"{what}, so it cannot be a run folder; choose another output_dir")]
    if os.statvfs(here).f_flag & os.ST_RDONLY:
        return [(loc, f"is on a read-only file system ({cut(str(here), 120)}); choose another output_dir")]
    if not os.access(here, os.W_OK | os.X_OK):
        what = "is a folder" if here == path else f"would be created in {cut(str(here), 120)}, a folder"
        return [(loc, f"{what} this user may not write to; choose another output_dir")]
    return []


def folder_model_type(folder: Path) -> str | None:
    """``model_type`` from a model folder's config.json; None when it has none or it cannot be read (the run says
    what is wrong with the folder when it loads it)."""
    import json

    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else None
    except (OSError, ValueError):
        return None
    kind = data.get("model_type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def model_type_of(model: Any, reg: Any) -> str | None:
    """The ``model_type`` the recipe's model will have, when its source can tell without downloading or converting
    anything (the source's optional ``model_type``: a local folder's config.json, a model already in the hub cache,
    a packaged model's known type); None when it cannot, or the section is not a source string."""
    if not isinstance(model, dict) or not isinstance(model.get("source"), str):
        return None
    scheme, rest = split_source(model["source"])
    peek = getattr(reg.sources.get(scheme), "model_type", None)
    if peek is None:
        return None
    revision = model.get("revision") if isinstance(model.get("revision"), str) else None
    try:
        kind = peek(rest, revision=revision)
    except Exception:  # a source's best guess must not break validation; the run reports what is wrong
        return None
    return kind if isinstance(kind, str) else None


def _owner(reg: Any, section: str, name: str) -> str | None:
    """The plugin that registered ``name`` as a method, task or model source."""
    return reg.owners.get(({"method": "methods", "task": "tasks", "model": "sources"}[section], name))


def split_source(ref: str) -> tuple[str, str]:
    """``scheme:rest``; a bare path (``/x``, ``./x``, ``~/x``) is ``local``, anything else without a scheme is ``hub``."""
    if ref.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(ref)):
        return "local", ref
    scheme, sep, rest = ref.partition(":")
    if sep and scheme and "/" not in scheme:
        return scheme, rest
    return "hub", ref


def _check_source(ref: str, reg: Any, allowed: list[str] | None = None) -> list[tuple[tuple, str]]:
    """The scheme of ``model.source`` is registered and allowed, and its source accepts the reference."""
    scheme, rest = split_source(ref)
    src = reg.sources.get(scheme)
    if src is None:
        avail = ", ".join(sorted(reg.sources)) or "none installed"
        return [
            (
                ("model", "source"),
                f"unknown model source scheme {shown(scheme)}{_closest(scheme, list(reg.sources))} (available: {avail}){reg.broken_note()}",
            )
        ]
    owner = _owner(reg, "model", scheme)
    if allowed is not None and owner not in allowed:
        return [
            (
                ("model", "source"),
                f"model source {scheme + ':'!r} comes from plugin {owner!r}, which is not in `plugins:` ({', '.join(map(str, allowed))})",
            )
        ]
    try:
        msg = src.check(rest)
    except OSError as exc:  # `local:` + a name too long for this OS, a folder it may not read
        msg = os_problem(exc)
    except ValueError:  # a NUL character in a local path
        msg = "not a usable path (it holds a NUL character)"
    return [(("model", "source"), msg)] if msg else []
