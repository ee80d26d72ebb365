"""``POST /v1/chat/completions`` in OpenAI's shape: reading the request, checking every field by hand (a 400
naming it, as OpenAI answers), and the answer (``chat.completion``, or ``chat.completion.chunk`` server-sent
events ending in ``data: [DONE]`` with ``stream: true``).

The model side is the served run's objective's ``chat`` object (see ``Objective`` in
:mod:`peftkit.plugin.contracts`): the chat template, prompt tokens, generation. This module owns the API on
top of it: stop strings, ``finish_reason``, ``usage``, streaming deltas.

Defaults follow OpenAI's API: ``temperature`` 1 and ``top_p`` 1 when absent (sampling); ``temperature: 0`` is
greedy decoding, the same answer ``peftkit generate`` gives.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from peftkit.serve.inputs import InputError, _kind, check_unicode

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# accepted only at their default value: anything else is refused by name rather than silently ignored
UNSUPPORTED = {
    "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
    "logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}), "audio": (None,),
    "frequency_penalty": (None, 0, 0.0), "presence_penalty": (None, 0, 0.0), "prediction": (None,),
    "modalities": (None, ["text"]), "web_search_options": (None,),
}  # fmt: skip
MAX_STOP = 4  # as OpenAI


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    prompt: list[int] = field(default_factory=list)  # set once the template has run


def _bad(field: str, message: str, status: int = 400) -> InputError:
    return InputError(status, field, message)


def _number(data: dict[str, Any], key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    v = data.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(key, f"{key} must be a number, not {_kind(v)}")
    if v > high or v < low or (low_open and v == low):
        raise _bad(key, f"{key} is {v}; it must be {'over' if low_open else 'at least'} {low} and at most {high}")
    return float(v)


def _content(value: Any, where: str, max_chars: int) -> str:
    """A message's content: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts (joined)."""
    if isinstance(value, list):
        parts = []
        for i, p in enumerate(value):
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                kind = p.get("type") if isinstance(p, dict) else _kind(p)
                raise _bad(f"{where}[{i}]", f"{where}[{i}] must be a text part {{'type': 'text', 'text': ...}}, "
                           f"not {kind!r}: this server reads text only")  # fmt: skip
            parts.append(p["text"])
        value = "".join(parts)
    if not isinstance(value, str):
        raise _bad(where, f"{where} must be a string (or a list of text parts), not {_kind(value)}")
    if len(value) > max_chars:
        raise _bad(where, f"{where} has {len(value)} characters; at most {max_chars} are accepted (--max-chars)")
    check_unicode(value, where, 400)
    return value


def _messages(raw: Any, max_chars: int) -> list[dict[str, str]]:
    if raw is None:
        raise _bad("messages", 'messages is missing: send [{"role": "user", "content": "..."}]')
    if not isinstance(raw, list) or not raw:
        raise _bad("messages", f"messages must be a non-empty list of {{role, content}} objects, not {_kind(raw)}"
                   if not isinstance(raw, list) else "messages is an empty list; send at least one message")  # fmt: skip
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(where, f"{where} must be an object with role and content, not {_kind(m)}")
        role = m.get("role")
        if role not in ROLES:
            raise _bad(f"{where}.role", f"{where}.role is {role!r}; use one of system, user, assistant (developer "
                       "reads as system; tool and function messages are not supported)")  # fmt: skip
        if "content" not in m or m["content"] is None:
            raise _bad(f"{where}.content", f"{where}.content is missing; every message needs its text")
        out.append({"role": ROLES[role], "content": _content(m["content"], f"{where}.content", max_chars)})
    return out


def _stop(raw: Any) -> list[str]:
    stops = [] if raw is None else [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _bad("stop", f"stop must be a non-empty string or a list of them, not {_kind(raw)}")
    if len(stops) > MAX_STOP:
        raise _bad("stop", f"stop has {len(stops)} strings; at most {MAX_STOP} are accepted")
    for i, s in enumerate(stops):
        check_unicode(s, f"stop[{i}]" if isinstance(raw, list) else "stop", 400)
    return stops


def parse_chat(
    data: dict[str, Any], models: dict[str, Any], max_chars: int, max_tokens: int, visible: list[str] | None = None
) -> ChatRequest:
    """A decoded body → :class:`ChatRequest`; InputError naming the field otherwise. ``models``: served name →
    ServedModel; ``max_tokens``: the most a request may ask for (``--max-tokens``); ``visible``: the served
    names an error may list (those the caller's key may use; default all)."""
    shown = list(models) if visible is None else visible
    chat = [n for n, m in models.items() if m.chat is not None]
    model = data.get("model")
    if model is None and len(chat) == 1:
        model = chat[0]  # one chat model: the name may be left out
    chat = [n for n in chat if n in shown]
    if not isinstance(model, str):
        raise _bad("model", f"model must be a string, one of {chat}, not {_kind(model)}")
    if model not in models:
        raise _bad("model", f"model {model!r} is not served here; served: {', '.join(shown) or 'none'}", 404)
    if models[model].chat is None:
        raise _bad("model", f"model {model!r} is a classifier: it answers POST /v1/classify, not chat completions; "
                   f"chat models here: {', '.join(chat) or 'none'}")  # fmt: skip
    for key, defaults in UNSUPPORTED.items():
        if key in data and data[key] not in defaults:
            raise _bad(key, f"{key} is not supported by peftkit serve; leave it out")
    n = data.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _bad("n", f"n is {n!r}; only n=1 (one answer per request) is supported")
    stream = data.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise _bad("stream", f"stream must be true or false, not {_kind(stream)}")
    opts = data.get("stream_options")
    if opts is not None and not (isinstance(opts, dict) and isinstance(opts.get("include_usage", False), bool)):
        raise _bad("stream_options", 'stream_options must be {"include_usage": true|false}')
    key = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    limit = data.get(key)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_tokens):
        raise _bad(
            key, f"{key} is {limit!r}; it must be an integer from 1 to {max_tokens} (this server's --max-tokens)"
        )
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed", f"seed must be an integer, not {_kind(seed)}")
    return ChatRequest(
        model=model, messages=_messages(data.get("messages"), max_chars), max_tokens=limit,
        temperature=_number(data, "temperature", 1.0, 0.0, 2.0), top_p=_number(data, "top_p", 1.0, 0.0, 1.0, True),
        stop=_stop(data.get("stop")), seed=seed, stream=bool(stream),
        include_usage=bool(stream and opts and opts.get("include_usage")),
    )  # fmt: skip


def fit_context(req: ChatRequest, chat: Any, max_tokens: int) -> None:
    """Render the prompt (400 naming ``messages`` when the template refuses it) and settle ``max_tokens``: the
    prompt and the answer must fit the model's context (400 naming the field that does not, as vLLM answers)."""
    from peftkit.errors import DataError

    try:
        req.prompt = chat.prompt_ids(req.messages)
    except DataError as exc:
        raise _bad("messages", f"messages: {exc}") from None
    ctx, n = chat.context_length, len(req.prompt)
    if n >= ctx:
        raise _bad("messages", f"the messages are {n} tokens after the chat template; this model's context is "
                   f"{ctx} tokens, with room for the answer: shorten or drop earlier messages")  # fmt: skip
    if req.max_tokens is None:
        req.max_tokens = min(max_tokens, ctx - n)
    elif n + req.max_tokens > ctx:
        raise _bad("max_tokens", f"this model's context is {ctx} tokens; you asked for {n + req.max_tokens} ({n} in "
                   f"the messages, {req.max_tokens} for the answer): lower max_tokens to {ctx - n} or less")  # fmt: skip


class Answer:
    """The answer's text as tokens arrive: cut at the first stop string, and the part that can be sent now
    (text that could still grow into a stop string, or an unfinished UTF-8 character, is held back)."""

    def __init__(self, chat: Any, stop: list[str]) -> None:
        self.chat, self.stop = chat, stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.ids: list[int] = []
        self.text, self.sent, self.stopped = "", 0, False

    def feed(self, ids: list[int]) -> bool:
        """All answer ids so far; True when a stop string has appeared (generation should end)."""
        self.ids = ids
        body = [t for t in ids if t not in self.chat.stop_ids]
        self.text = self.chat.decode(body)
        hits = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
        return self.stopped

    def delta(self, final: bool = False) -> str:
        """Text not sent yet that is safe to send."""
        end = len(self.text) if final or self.stopped else len(self.text) - self.hold
        if not final and self.text.endswith("\ufffd"):
            end = min(end, len(self.text) - 1)
        if end <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : end], end
        return out

    def finish_reason(self, max_tokens: int) -> str:
        if self.stopped or (self.ids and self.ids[-1] in self.chat.stop_ids) or len(self.ids) < max_tokens:
            return "stop"
        return "length"


def usage(req: ChatRequest, answer: Answer) -> dict[str, int]:
    """OpenAI's usage; completion tokens are the tokens generated, the stop token that ended them included."""
    p, c = len(req.prompt), len(answer.ids)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(req: ChatRequest, answer: Answer, rid: str) -> dict[str, Any]:
    """The ``chat.completion`` object."""
    return {
        "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()), "model": req.model,
        "choices": [{
            "index": 0, "message": {"role": "assistant", "content": answer.text}, "logprobs": None,
            "finish_reason": answer.finish_reason(req.max_tokens or 0),
        }],
        "usage": usage(req, answer), "system_fingerprint": None,
    }  # fmt: skip


def chunk(req: ChatRequest, rid: str, created: int, delta: dict[str, Any] | None, finish: str | None = None,
          use: dict[str, int] | None = None) -> str:  # fmt: skip
    """One ``chat.completion.chunk`` server-sent event."""
    body: dict[str, Any] = {
        "id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created, "model": req.model,
        "system_fingerprint": None,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }  # fmt: skip
    if use is not None or req.include_usage:
        body["usage"] = use
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
