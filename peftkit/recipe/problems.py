"""Problems as users read them: a pydantic error → ``(dotted path, message)`` pairs with nearest-key hints, and
those pairs → ``dotted.key: message (file:line)`` lines."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError


def _fmt_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "__root__") or "(top level)"


def pydantic_problems(exc: ValidationError, prefix: tuple = (), fields: dict | None = None) -> list[tuple[tuple, str]]:
    """Turn a pydantic error into ``(path, message)`` pairs, with nearest-key hints for typos."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(fields, err["loc"][:-1]) if fields is not None else None
            choices = list(parent.model_fields) if parent is not None else []
            near = difflib.get_close_matches(str(loc[-1]), choices, n=1)
            hint = (
                f" — did you mean {near[0]!r}?" if near else (f" (valid keys: {', '.join(choices)})" if choices else "")
            )
            out.append((loc, f"unknown key{hint}"))
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if kind == "missing":
            out.append((loc, "required key is missing"))
            continue
        got = err.get("input")
        # a validator's own message may already say what it got ("..., got 0"): do not repeat it
        got_s = f", got {got!r}" if not isinstance(got, (dict, list)) and ", got " not in msg else ""
        if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
            msg = msg.replace("Input should be", "must be")
        out.append((loc, f"{msg[0].lower() + msg[1:]}{got_s}"))
    return out


def _model_at(model: Any, loc: tuple) -> Any:
    """The pydantic model class at ``loc`` inside ``model`` (for listing valid keys)."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return None
    return model


def _format(
    problems: list[tuple[tuple, str]],
    lines: dict,
    source: str | None,
    overridden: dict[tuple[str, ...], str] | None = None,
) -> list[str]:
    out = []
    for loc, msg in problems:
        path = _fmt_path(loc)
        keys = [tuple(str(p) for p in loc[:n]) for n in range(len(loc), 0, -1)]
        item = next((overridden[k] for k in keys if k in (overridden or {})), None)
        line = next((lines[k] for k in keys if lines.get(k)), None)
        where = f" (command-line override {item})" if item else f" ({source}:{line})" if (line and source) else ""
        out.append(f"{path}: {msg}{where}")
    return out


def _closest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" — did you mean {near[0]!r}?" if near else ""
