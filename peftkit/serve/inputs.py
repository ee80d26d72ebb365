"""Reading and checking a ``POST /v1/classify`` body by hand, so every bad input gets a 4xx JSON error that
names the field (a pydantic model would answer most cases, but not non-UTF-8 bytes, the body limit or
whitespace-only texts, and its messages name no field in the shapes vLLM/TEI clients send).

Accepted (vLLM ``/classify`` and TEI ``/predict`` shapes)::

    {"model": "intent", "input": "text" | ["text", ...] | [["text", "pair"], ...]}
    {"model": "intent", "inputs": ...}            # TEI's key
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class InputError(Exception):
    """A bad request: HTTP ``status``, the ``field`` at fault (``body``, ``model``, ``input[2]``) and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict[str, Any]:
        # `param` is OpenAI's name for the field at fault (its clients read it); `field` is peftkit's
        err = {"type": "invalid_request_error", "field": self.field, "param": self.field, "message": self.message}
        return {"error": err}


@dataclass
class Limits:
    max_body: int = 1_000_000
    max_inputs: int = 64
    max_chars: int = 20_000


@dataclass
class Classify:
    model: str
    texts: list[str]
    pairs: list[str] | None


def decode_body(raw: bytes, limits: Limits) -> dict[str, Any]:
    """Bytes → JSON object; 413 over the limit, 400 for non-UTF-8, non-JSON or JSON nested too deeply to parse,
    422 for a non-object."""
    if len(raw) > limits.max_body:
        raise InputError(413, "body", f"request body is {len(raw)} bytes; at most {limits.max_body} are accepted")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            400, "body", f"request body is not UTF-8 (byte {exc.start} is {raw[exc.start]:#04x})"
        ) from None
    if not text.strip():
        raise InputError(400, "body", 'request body is empty; send JSON like {"model": ..., "input": ...}')
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(400, "body", f"request body is not JSON: {exc}") from None
    except RecursionError:  # "[[[[..." deeper than the parser recurses, yet under the body limit
        raise InputError(400, "body", "request body is not JSON this server reads: it is nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(422, "body", f"request body must be a JSON object, not {type(data).__name__}")
    return data


def _text(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise InputError(422, where, f"{where} must be a string, not {_kind(value)}")
    if not value.strip():
        raise InputError(422, where, f"{where} is empty or only whitespace; send the text to classify")
    if len(value) > limits.max_chars:
        raise InputError(
            422, where, f"{where} has {len(value)} characters; at most {limits.max_chars} are accepted "
            "(the model reads only its first max_length tokens anyway)",
        )  # fmt: skip
    check_unicode(value, where)
    return value


def check_unicode(value: str, where: str, status: int = 422) -> None:
    """``status`` for a string that is not text: a lone surrogate (JSON allows ``"\\ud800"``, but no tokenizer reads
    it, and it cannot be written out as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            status, where, f"{where} holds a lone surrogate (U+{ord(value[exc.start]):04X} at character {exc.start}), "
            "which is not text: a \\uD800-\\uDFFF escape must be half of a surrogate pair",
        ) from None  # fmt: skip


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def parse_classify(
    data: dict[str, Any], served: list[str], limits: Limits, visible: list[str] | None = None
) -> Classify:
    """A decoded body → (model, texts, pairs); InputError naming the field otherwise. ``visible``: the served
    names an error may list (those the caller's key may use; default all)."""
    shown = served if visible is None else visible
    model = data.get("model")
    if model is None and len(served) == 1:
        model = served[0]  # one model: the name may be left out
    if not isinstance(model, str):
        raise InputError(422, "model", f"model must be a string, one of {shown}, not {_kind(model)}")
    if model not in served:
        raise InputError(404, "model", f"model {model!r} is not served here; served: {', '.join(shown) or 'none'}")
    key = "input" if "input" in data else "inputs"
    raw = data.get(key)
    if raw is None:
        raise InputError(422, "input", "input is missing: a text, a list of texts, or a list of [text, pair]")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise InputError(422, key, f"{key} must be a string or a list, not {_kind(raw)}")
    if not items:
        raise InputError(422, key, f"{key} is an empty list; send at least one text")
    if len(items) > limits.max_inputs:
        raise InputError(413, key, f"{key} has {len(items)} items; at most {limits.max_inputs} per request")
    is_pair = isinstance(items[0], list)
    texts, pairs = [], []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if isinstance(item, list) != is_pair:
            raise InputError(422, where, f"{where}: mix of texts and [text, pair] lists; send one kind per request")
        if is_pair:
            if len(item) != 2:
                raise InputError(422, where, f"{where} must be [text, pair] (2 strings), got {len(item)} items")
            texts.append(_text(item[0], f"{where}[0]", limits))
            pairs.append(_text(item[1], f"{where}[1]", limits))
        else:
            texts.append(_text(item, where, limits))
    return Classify(model, texts, pairs if is_pair else None)
