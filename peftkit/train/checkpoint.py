"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, data position, history.

A checkpoint is written into ``checkpoints/.tmp-*``; its last file is ``complete.json`` (the size of every
other file), and only then is the folder renamed to ``checkpoints/step-NNNNNNNN``. A checkpoint of a step that
is already saved (an epoch end that falls on a ``checkpoint_every`` step) replaces the old one by renaming it
aside first (``.old-*``) and deleting it only after the new one is in place; a kill between the two renames
leaves the old one to be renamed back. :func:`latest` uses only checkpoints whose marker matches their
files and warns about any other, so a damaged checkpoint is never picked. Everything loads with
``torch.load(weights_only=True)`` or safetensors: no pickled code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from peftkit.errors import PeftkitError

log = logging.getLogger("peftkit")
PREFIX = "step-"
MARKER = "complete.json"  # written last: a folder without it (or whose sizes differ) is not a checkpoint
OLD = ".old-"  # a replaced checkpoint, kept until its successor is in place
RESUMED = ("step", "epoch", "batch_index", "samples", "history", "best", "losses")  # the RunState fields it holds


def recipe_hash(resolved: dict[str, Any]) -> str:
    """Hash of the resolved recipe minus output_dir: two runs with the same hash are the same run."""
    d = {k: v for k, v in resolved.items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    import torch

    np_state = np.random.get_state()
    out = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(s: dict[str, Any]) -> None:
    import torch

    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in s["python"]))
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(
    out_dir: Path,
    model: Any,
    opt: Any,
    sched: Any,
    meta: dict[str, Any],
    keep: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint atomically, then keep only the newest ``keep``.

    ``extra``: what plugins need to resume exactly (``peftkit_on_save_checkpoint``), stored in trainer.pt."""
    import torch
    from safetensors.torch import save_file

    root = out_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{meta['step']:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(
        {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(), "extra": extra or {}},
        tmp / "trainer.pt",
    )
    (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=str))
    _fsync_files(tmp)  # data must be on disk before the marker says it is there
    sizes = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())}
    (tmp / MARKER).write_text(json.dumps({"files": sizes}))
    _fsync_files(tmp, MARKER)
    _swap_in(tmp, final)
    prune(root, keep)
    return final


def _fsync_files(folder: Path, *names: str) -> None:
    for f in [folder / n for n in names] or list(folder.iterdir()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is renamed aside first and deleted only afterwards, so at
    every instant either it or its replacement is complete under its own name (or aside, see :func:`_recover`)."""
    aside = final.with_name(f"{OLD}{final.name}-{os.getpid()}")
    if final.exists():
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(final, aside)
    os.replace(tmp, final)
    if aside.exists():
        shutil.rmtree(aside)


def _recover(root: Path) -> None:
    """Undo a replacement interrupted between its two renames: rename the complete old checkpoint back when its
    successor never arrived; delete it when the successor is there."""
    if not root.is_dir():
        return
    for aside in sorted(p for p in root.iterdir() if p.name.startswith(OLD)):
        name = aside.name[len(OLD) :].rsplit("-", 1)[0]
        target = root / name
        if not target.exists() and problem(aside) is None:
            os.replace(aside, target)
            log.warning("checkpoint %s: restored from %s (a replacement of it was interrupted)", target, aside.name)
        else:
            shutil.rmtree(aside, ignore_errors=True)


def problem(path: Path) -> str | None:
    """Why ``path`` is not a usable checkpoint (no completeness marker, a file missing or of another size), or
    None when it is complete."""
    try:
        sizes = json.loads((path / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"it has no {MARKER} (its write was interrupted, or an older peftkit wrote it)"
    for name, size in sizes.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, not the {size} it was written with"
    return None


def _step_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def complete(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp folders of interrupted writes and damaged ones are left out)."""
    return [p for p in _step_dirs(root) if problem(p) is None]


def prune(root: Path, keep: int) -> None:
    for stale in [p for p in root.iterdir() if p.name.startswith(".tmp-")]:
        shutil.rmtree(stale, ignore_errors=True)
    for old in complete(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def latest(out_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None. Newer ones that are not complete are skipped
    with a warning naming what is wrong with them."""
    root = out_dir / "checkpoints"
    _recover(root)
    for path in reversed(_step_dirs(root)):
        why = problem(path)
        if why is None:
            return path
        log.warning("checkpoint %s is not usable and is skipped: %s", path, why)
    return None


def restore(path: Path, model: Any, opt: Any, sched: Any, expected_hash: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint into model/optimizer/scheduler and the RNGs; returns its meta and the plugins' extra state."""
    import torch
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    if meta.get("recipe_hash") != expected_hash:
        raise PeftkitError(
            f"cannot resume from {path}: it was written by a different recipe (hash {meta.get('recipe_hash')} != "
            f"{expected_hash}). Resume with the recipe in {path.parent.parent / 'recipe.yaml'}, or choose another output_dir"
        )
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise PeftkitError(f"checkpoint {path} does not fit this model (e.g. {missing[0]}); was the method changed?")
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)
    trainer = torch.load(path / "trainer.pt", weights_only=True)
    opt.load_state_dict(trainer["optimizer"])
    sched.load_state_dict(trainer["scheduler"])
    _set_rng_state(trainer["rng"])
    log.info("resumed from %s (step %d, in epoch %d)", path, meta["step"], meta["epoch"] + 1)
    return meta, trainer.get("extra", {})


def meta_of(state: Any, *, train_seconds: float) -> dict[str, Any]:
    """``state.json`` of a checkpoint of ``state``: where the run is, its history, its recipe and its time so far."""
    meta = {k: getattr(state, k) for k in RESUMED}
    meta.update(recipe_hash=state.recipe_hash, train_seconds=train_seconds, paused_seconds=state.paused_seconds)
    return meta


def resume_state(path: Path, state: Any, opt: Any, sched: Any) -> dict[str, Any]:
    """Restore ``path`` into the run: weights, optimizer, scheduler, RNGs and the RunState fields (time of the
    earlier legs included). Returns the plugins' extra state for ``peftkit_on_load_checkpoint``."""
    meta, extra = restore(path, state.model, opt, sched, state.recipe_hash)
    for key in RESUMED:
        setattr(state, key, meta[key])
    # checkpoints of older peftkit versions carry no time: their earlier legs are not counted
    state.train_seconds, state.paused_seconds = meta.get("train_seconds", 0.0), meta.get("paused_seconds", 0.0)
    return extra
