"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, data position, history.

A checkpoint is written into ``checkpoints/.tmp-*`` and renamed to ``checkpoints/step-NNNNNNNN`` only
when complete, so a run killed mid-write never leaves a checkpoint that looks usable. Everything
loads with ``torch.load(weights_only=True)`` or safetensors: no pickled code.
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
    for f in tmp.iterdir():  # data must be on disk before the rename makes the checkpoint visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    prune(root, keep)
    return final


def complete(root: Path) -> list[Path]:
    """Finished checkpoints, oldest first (temp folders of interrupted writes are ignored)."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()
    )


def prune(root: Path, keep: int) -> None:
    for stale in [p for p in root.iterdir() if p.name.startswith(".tmp-")]:
        shutil.rmtree(stale, ignore_errors=True)
    for old in complete(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def latest(out_dir: Path) -> Path | None:
    found = complete(out_dir / "checkpoints")
    return found[-1] if found else None


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
