"""Dotted keys: the one dotted-key setter, ``a.b=c`` command-line overrides, and flattening a mapping to them."""

from __future__ import annotations

from typing import Any

import yaml

from peftkit.errors import RecipeError
from peftkit.recipe.problems import shown
from peftkit.recipe.yaml import describe, load


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
        problem = _apply_one(data, item)
        if problem:
            problems.append(f"override {shown(item)}: {problem}")
    if problems:
        raise RecipeError(problems)
    return data


def _apply_one(data: dict[str, Any], item: str) -> str | None:
    """Set one ``key=value`` in ``data``; the problem with it instead, when there is one."""
    if "=" not in item:
        return "expected key=value, e.g. train.lr=3e-4"
    key, _, raw = item.partition("=")
    if not all(part.strip() for part in key.strip().split(".")):
        return "the key has an empty part; write it as section.key=value, e.g. train.lr=3e-4"
    try:
        value = _parse_value(raw)
    except yaml.YAMLError as exc:
        return describe(exc)
    return set_dotted(data, key, value)


def _parse_value(raw: str) -> Any:
    """An override value as a recipe file would read it (``3e-4`` is a float, ``[a,b]`` a list), under the same
    loader and limits: what the loader refuses in a file (a tag, an alias bomb, ``0x_``) it refuses here
    (raises a ``yaml.YAMLError``). Text that is not YAML at all (``a: b: c``) is taken as the string it is."""
    if not raw.strip():
        return ""
    try:
        return load(raw)
    except (yaml.scanner.ScannerError, yaml.parser.ParserError):
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
