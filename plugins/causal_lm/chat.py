"""Chat rows: reading the common jsonl shapes into OpenAI-style messages, and rendering them through a chat
template into token segments, each marked as prompt (no loss) or answer (loss).

Shapes read (one JSON object a line):

- ``{"instruction": ..., "input": ..., "output": ...}`` (Alpaca; ``input`` optional, ``system`` optional);
- ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}`` (OpenAI);
- ``{"conversations": [{"from": "system"|"human"|"gpt", "value": ...}, ...]}`` (ShareGPT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftkit import DataError, Example, PeftkitError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}

# Named templates for base models whose tokenizer carries none (``task.params.template``).
TEMPLATES = {
    "chatml": (
        "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
    ),
    "alpaca": (
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'system' -%}{{ m['content'] + '\n\n' }}"
        "{%- elif m['role'] == 'user' -%}{{ '### Instruction:\n' + m['content'] + '\n\n' }}"
        "{%- else -%}{{ '### Response:\n' + m['content'] + eos_token + '\n\n' }}{%- endif -%}"
        "{%- endfor -%}{%- if add_generation_prompt -%}{{ '### Response:\n' }}{%- endif -%}"
    ),
}


@dataclass
class ChatExample(Example):
    """An :class:`~peftkit.Example` whose ``messages`` hold the conversation (``text`` is its first user turn,
    for logs and checks)."""

    messages: list[dict[str, str]] = field(default_factory=list)


def to_messages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The row as ``[{"role", "content"}]``; DataError naming ``where`` for a shape it is not, or an unknown role."""
    if "messages" in row:
        return _turns(row["messages"], "role", "content", {r: r for r in ROLES}, where)
    if "conversations" in row:
        return _turns(row["conversations"], "from", "value", SHAREGPT_ROLES, where)
    if "instruction" in row and "output" in row:
        instruction, output = (_text(row, k, where, required=True) for k in ("instruction", "output"))
        extra, system = (_text(row, k, where, required=False) for k in ("input", "system"))
        prompt = instruction + ("\n\n" + extra if extra.strip() else "")
        msgs = [{"role": "system", "content": system}] if system else []
        return [*msgs, {"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    raise DataError(
        f"{where}: a row needs 'messages' (OpenAI), 'conversations' (ShareGPT) or 'instruction' + 'output' "
        f"(Alpaca); it has fields {', '.join(map(str, row)) or 'none'}"
    )


def _text(row: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    """An Alpaca field as a string: ``instruction`` and ``output`` must be strings; ``input`` and ``system`` may also
    be absent or null (empty). Anything else (null, a number, a list) is a DataError naming the field, not the text
    ``None`` trained as an answer."""
    value = row.get(key)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    got = "null" if value is None else f"{type(value).__name__} {value!r:.40}"
    what = "a string" if required else "a string, null or absent"
    raise DataError(f"{where}: field {key!r} is {got}, not {what}; fix the row or drop it")


def _turns(turns: Any, role_key: str, text_key: str, roles: dict[str, str], where: str) -> list[dict[str, str]]:
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: the turns must be a non-empty list of objects, got {type(turns).__name__}")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or not isinstance(t.get(text_key), str):
            raise DataError(f"{where}: turn {i} must be an object with a string {text_key!r}")
        role = roles.get(str(t.get(role_key)))
        if role is None:
            raise DataError(
                f"{where}: turn {i} has unknown {role_key} {t.get(role_key)!r}; use one of {', '.join(roles)}"
            )
        out.append({"role": role, "content": t[text_key]})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: no assistant turn, so there is no answer to train on; add one or drop the row")
    return out


def template_of(tokenizer: Any, name: str) -> str | None:
    """The Jinja chat template to render with: a named one, or the tokenizer's own for ``auto``."""
    if name != "auto":
        return TEMPLATES[name]
    own = getattr(tokenizer, "chat_template", None)
    if not own:
        raise PeftkitError(
            "task.params.template: auto, but this tokenizer has no chat template (a base model); set it to one "
            f"of {', '.join(TEMPLATES)}"
        )
    return None  # the tokenizer's own


def run_template(tokenizer: Any, params: Any) -> str | None:
    """The template a finished run answers with: its ``task.params.template`` (``lm/sft``), else the tokenizer's
    own, else chatml (``None`` means the tokenizer's own)."""
    name = getattr(params, "template", "auto")
    if name != "auto":
        return TEMPLATES[name]
    return None if getattr(tokenizer, "chat_template", None) else TEMPLATES["chatml"]


def render(tokenizer: Any, messages: list[dict[str, str]], template: str | None, prompt: bool) -> str:
    """``messages`` as text through the template (``prompt``: with the assistant's opening, to generate from)."""
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=prompt, chat_template=template
        )
    except Exception as exc:  # jinja raises its own exception types (TemplateError, raise_exception)
        raise DataError(f"the chat template does not render this conversation: {exc}") from None


def segments(tokenizer: Any, messages: list[dict[str, str]], template: str | None) -> list[tuple[str, bool]]:
    """The conversation's text cut into ``(piece, is_answer)``: each assistant turn as the template writes it
    (its content and closing, such as ``<end_of_turn>``) is an answer; everything before it is prompt.

    Each assistant turn is found as the difference between the rendering up to it with the generation prompt
    and the rendering including it, so the prompt pieces are exactly what generation starts from."""
    out: list[tuple[str, bool]] = []
    done = ""
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:k], template, prompt=True)
        after = render(tokenizer, messages[: k + 1], template, prompt=False)
        if not (before.startswith(done) and after.startswith(before)):
            raise DataError(
                "the chat template renders a conversation's beginning differently once more turns follow, so "
                "the answer tokens cannot be found; use another task.params.template"
            )
        out += [(before[len(done) :], False), (after[len(before) :], True)]
        done = after
    return out


def tokenize_segments(tokenizer: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[bool], int]:
    """``(ids, is_answer per token, tokens before the last answer)``; the template writes the special tokens."""
    ids: list[int] = []
    answer: list[bool] = []
    last_prompt_end = 0
    for text, is_answer in pieces:
        toks = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        if is_answer:
            last_prompt_end = len(ids)
        ids += toks
        answer += [is_answer] * len(toks)
    return ids, answer, last_prompt_end


def stop_ids(tokenizer: Any, template: str | None) -> list[int]:
    """Token ids that end an answer: the EOS token, and the first token the template writes after an
    assistant's content (``<end_of_turn>``, ``<|im_end|>``), found from a probe conversation."""
    out = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "PROBE"}]
    try:
        text = render(tokenizer, probe, template, prompt=False)
    except DataError:
        return out
    tail = text[text.rfind("PROBE") + len("PROBE") :].lstrip(" ")
    if tail:
        first = tokenizer(tail, add_special_tokens=False)["input_ids"][:1]
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        if first and (first[0] in special or first[0] in added) and first[0] not in out:
            out.append(first[0])
    return out
