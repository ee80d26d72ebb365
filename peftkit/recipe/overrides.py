"""Dotted keys: the one dotted-key setter, ``a.b=c`` command-line overrides, and flattening a mapping to them."""

from __future__ import annotations

from typing import Any

import yaml

from peftkit.errors import RecipeError
from peftkit.recipe.yaml import RecipeLoader


def set_dotted(data: dict[str, Any], key: str, value: Any) -> str | None:
    """``data[a][b][c] = value`` for ``key = "a.b.c"``, creating mappings on the way (the one dotted-key setter:
    overrides, compare files and search values all use it). Returns a problem instead when a step is not a mapping."""
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            return (
                f"{'.'.join(parts[: i + 1])} is {type(nxt).__name__}, not a mapping, so it has no key {parts[i + 1]!r}"
            )
        node = nxt
    node[parts[-1]] = value
    return None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML, so ``train.lr=3e-4`` is a float)."""
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
            continue
        key, _, raw = item.partition("=")
        problem = set_dotted(data, key, _parse_value(raw))
        if problem:
            problems.append(f"override {item!r}: {problem}")
    if problems:
        raise RecipeError(problems)
    return data


def _parse_value(raw: str) -> Any:
    """An override value as a recipe file would read it (``3e-4`` is a float, ``[a,b]`` a list)."""
    if not raw.strip():
        return ""
    try:
        return yaml.load(raw, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return raw


def override_keys(overrides: list[str]) -> dict[tuple[str, ...], str]:
    """``{key path: "key=value"}`` of command-line overrides, so errors point at them rather than the file."""
    return {tuple(item.partition("=")[0].strip().split(".")): item for item in overrides if "=" in item}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"train.lr": 0.001, ...}`` (dotted keys, as overrides write them; empty mappings kept)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
