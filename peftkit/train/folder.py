"""Before a run writes its output_dir: never over an earlier run by accident, and --resume only the same run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError
from peftkit.run_dir import RUN_FILES
from peftkit.train import checkpoint

OWNED = ("metrics.json", "recipe.yaml", "model", "checkpoints", "tensorboard", "train.log")


def free_sibling(path: Path) -> Path:
    """``path-2``, ``path-3``, ...: the first that does not exist, for advice that works when followed."""
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two resolved recipes (output_dir aside), as ``key: old -> new``."""
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in set(a) | set(b) if k != "output_dir" and a.get(k, "<unset>") != b.get(k, "<unset>"))
    return [f"{k}: {a.get(k, '<unset>')!r:.40} -> {b.get(k, '<unset>')!r:.40}" for k in keys]


def _old_recipe(path: Path) -> dict[str, Any] | None:
    import yaml

    file = path / "recipe.yaml"
    try:
        old = yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return old if isinstance(old, dict) else None


def check_resume(path: Path, resolved: dict[str, Any]) -> Path:
    """The checkpoint ``--resume`` continues from; PeftkitError naming what to do when there is none, or when the
    recipe is not the one that started the run (with the keys that differ)."""
    other = free_sibling(path)
    latest = checkpoint.latest(path)
    if latest is None:
        raise PeftkitError(
            f"--resume: {path} holds no complete checkpoint to resume from; start the run again with --overwrite "
            f"(its files are replaced), or run without --resume into another output_dir (e.g. output_dir={other})"
        )
    old = _old_recipe(path)
    if old is None or checkpoint.recipe_hash(old) != checkpoint.recipe_hash(resolved):
        diff = changed_keys(old or {}, resolved) if old is not None else ["its recipe.yaml is missing or unreadable"]
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise PeftkitError(
            f"--resume: the recipe differs from the one that started {path} ({shown}); resume with that recipe "
            f"(peftkit run {path / 'recipe.yaml'} --resume), or run this one into another output_dir "
            f"(e.g. output_dir={other})"
        )
    return latest


def check_output_dir(path: Path, resolved: dict[str, Any], *, overwrite: bool, resume: bool) -> Path | None:
    """Refuse to write over an earlier run unless asked to; nothing is lost by accident. With ``--overwrite``,
    delete the earlier run's files. Returns the checkpoint to resume from (``resume``), else None."""
    if resume:
        return check_resume(path, resolved)
    found = [n for n in RUN_FILES + ("checkpoints",) if (path / n).exists()]
    if found and not overwrite:
        old = _old_recipe(path)
        same = old is not None and checkpoint.recipe_hash(old) == checkpoint.recipe_hash(resolved)
        hint = "pass --resume to continue it, " if same and checkpoint.latest(path) else ""
        raise PeftkitError(
            f"output_dir {path} already holds a run ({', '.join(found)}); {hint}choose another output_dir "
            f"(e.g. output_dir={free_sibling(path)}), or pass --overwrite to replace it"
        )
    if found and overwrite:
        for name in OWNED:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return None
