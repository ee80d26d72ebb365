"""Problems as users read them: a pydantic error → ``(dotted path, message)`` pairs with nearest-key hints, and
those pairs → ``dotted.key: message (file:line)`` lines. Values echoed back are cut (:func:`shown`), so a
multi-megabyte value never floods the terminal."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

MAX_MESSAGE = 1000  # characters of one problem's message; a safety net behind the 80-character cut of values


def cut(text: str, limit: int = 80) -> str:
    """``text`` on one line (a newline or other control character escaped, as ``repr`` writes it), or its
    first ``limit`` characters and "…" with the full length, when it is longer."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for echoing a user's value in a message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {len(str(abs(value))) if value.bit_length() < 14000 else 'over 4,000'} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int inside beyond Python's digit limit, a structure too deep
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def _fmt_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "__root__") or "(top level)"


def pydantic_problems(
    exc: ValidationError, prefix: tuple = (), fields: Any = None, data: Any = None
) -> list[tuple[tuple, str]]:
    """Turn a pydantic error into ``(path, message)`` pairs, with nearest-key hints for typos.

    Args:
        exc: what ``model_validate`` raised.
        prefix: the path of the validated section (``("method", "params")``).
        fields: the model class, for the valid keys of a typo.
        data: the validated input; with it, a union's member names (``list[str]``) leave the path, which then
            reads as the user's keys.
    """
    out: list[tuple[tuple, str]] = []
    union: dict[tuple, list[str]] = {}  # user path → what each member of a union said about it
    for err in exc.errors(include_url=False):
        own = _user_loc(tuple(err["loc"]), data) if data is not None else tuple(err["loc"])
        msg = _message(err, own, fields)
        if len(own) < len(err["loc"]) and err["type"] not in ("extra_forbidden", "missing"):
            union.setdefault(prefix + own, []).append(msg)
        elif (prefix + own, msg) not in out:
            out.append((prefix + own, msg))
    for loc, msgs in union.items():
        if any(other[: len(loc)] == loc and len(other) > len(loc) for other in union):
            continue  # a member matched the value's shape and said what is wrong inside it: that is the answer
        out.append((loc, _either(list(dict.fromkeys(msgs)))))
    return out


def _either(msgs: list[str]) -> str:
    """``a, got 5 — or b, got 5`` as ``a — or b, got 5``: what each union member wanted, the value once."""
    got = msgs[0][msgs[0].rfind(", got ") :] if ", got " in msgs[0] else ""
    if got and all(m.endswith(got) for m in msgs):
        return " — or ".join(m[: -len(got)] for m in msgs) + got
    return " — or ".join(msgs)


def _message(err: Any, own: tuple, fields: Any) -> str:
    """The message of one pydantic error, as a user reads it (``own``: its path inside the validated model)."""
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(fields, own[:-1]) if fields is not None else None
        choices = list(parent.model_fields) if parent is not None else []
        near = difflib.get_close_matches(str(own[-1]), choices, n=1) if own else []
        hint = f" — did you mean {near[0]!r}?" if near else (f" (valid keys: {', '.join(choices)})" if choices else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if err["loc"] and err["loc"][-1] == "[key]":
        return f"the key {shown(err.get('input'))} is not a string; quote it"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    # a validator's own message may already say what it got ("..., got 0"): do not repeat it
    got_s = f", got {shown(got)}" if not isinstance(got, (dict, list)) and ", got " not in msg else ""
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}:
        msg = msg.replace("Input should be", "must be")
    return f"{msg[0].lower() + msg[1:]}{got_s}"


def _user_loc(loc: tuple, data: Any) -> tuple:
    """``loc`` without the union member names pydantic inserts (``target_modules.list[str].0`` →
    ``target_modules.0``): a part that is not a key or index of the data at that point is dropped — except
    the last inside a mapping, which names a missing key."""
    out, node = [], data
    for i, part in enumerate(loc):
        if part == "[key]":
            continue  # pydantic's marker for "the key itself"; the message says so
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict):
            node = None
        else:
            continue
        out.append(part)
    return tuple(out)


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
    """``dotted.key: message (where)`` lines; ``where`` is the command-line override that set the key (or created
    the path the problem is in), else the file line of the nearest key the file has."""
    out = []
    for loc, msg in problems:
        path = cut(_fmt_path(loc), 200)
        keys = [tuple(str(p) for p in loc[:n]) for n in range(len(loc), 0, -1)]
        line, depth = next(((lines[k], len(k)) for k in keys if lines.get(k)), (None, 0))
        item = _blamed_override(keys[0] if keys else (), depth, overridden or {})
        where = f" (command-line override {cut(item)})" if item else f" ({source}:{line})" if (line and source) else ""
        out.append(f"{path}: {cut(msg, MAX_MESSAGE)}{where}")
    return out


def _blamed_override(loc: tuple[str, ...], file_depth: int, overridden: dict[tuple[str, ...], str]) -> str | None:
    """The override behind a problem at ``loc``: one that set ``loc`` or a parent of it, else the one sharing the
    longest part of the path when that is deeper than what the file has (``model.quantization.type=fp4`` on a file
    without ``model.quantization``: a missing ``bits`` is the override's doing)."""
    best, best_depth = None, file_depth
    for key, item in overridden.items():
        if loc[: len(key)] == key:
            return item
        shared = next((n for n in range(min(len(key), len(loc)), 0, -1) if key[:n] == loc[:n]), 0)
        if shared > best_depth:
            best, best_depth = item, shared
    return best


def _closest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" — did you mean {near[0]!r}?" if near else ""
