"""The ``lm/sft`` (instruction / chat data) and ``lm/text`` (raw text) tasks of the ``causal-lm`` objective."""

from __future__ import annotations

import json
from typing import Any

from peftkit import DataError, Example
from peftkit.kit import missing_files, read_rows
from peftkit_plugins.causal_lm.chat import ChatExample, to_messages
from peftkit_plugins.causal_lm.config import SftParams, TextParams

OBJECTIVE = "causal-lm"


class _LmTask:
    """What both tasks share: no label space, metrics computed by the objective, generated answers as predictions."""

    metric = "token_accuracy"
    objective = OBJECTIVE

    def check_data(self, params: Any) -> list[tuple[str, str]]:
        return missing_files(params, ("train_file", "dev_file"))

    def label_names(self, params: Any) -> list[str]:
        """None: the targets are the text's own next tokens."""
        return []

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        """Next-token accuracy on the answer tokens, from predicted and true token ids."""
        import numpy as np

        p, r = np.asarray(predictions), np.asarray(references)
        return {"token_accuracy": float((p == r).mean()) if len(r) else 0.0}

    def prediction_file(self, params: Any) -> str:
        return "generations.jsonl"

    def format_prediction(self, example: Example, label_id: Any, params: Any) -> dict[str, Any]:
        return {"id": example.id, "output": label_id}


class SftTask(_LmTask):
    """Supervised fine-tuning on instruction or chat rows: loss on the assistant's answers only."""

    name = "lm/sft"
    summary = (
        "Instruction / chat fine-tuning of a decoder (jsonl: Alpaca, OpenAI messages, ShareGPT); answer-only loss."
    )
    params_model = SftParams
    splits = ("train", "dev")  # answers to new prompts: `peftkit generate RUN_DIR --prompt-file F`

    def objective_options(self, params: SftParams) -> dict[str, Any]:
        return {"template": params.template, "generation": params.generation.model_dump()}

    def load_split(self, params: SftParams, split: str) -> list[Example]:
        path = params.train_file if split == "train" else params.dev_file
        if path is None:
            raise DataError(f"task.params.{split}_file is not set; lm/sft has no {split} split without it")
        limit = params.max_train_samples if split == "train" else params.max_dev_samples
        out = []
        for line, row in read_rows(path, "jsonl", limit=limit):
            messages = to_messages(row, f"{path}:{line}")
            first = next((m["content"] for m in messages if m["role"] == "user"), "")
            out.append(ChatExample(first, id=row.get("id", line), messages=messages))
        return out


class TextTask(_LmTask):
    """Continued causal-LM pretraining on raw text; dev loss, perplexity and next-token accuracy."""

    name = "lm/text"
    summary = "Continue causal-LM pretraining of a decoder on your own text (.txt or jsonl); loss and perplexity."
    params_model = TextParams
    splits = ("train", "dev")

    def objective_options(self, params: TextParams) -> dict[str, Any]:
        return {"pack": params.pack, "generation": {"samples": 0}}

    def load_split(self, params: TextParams, split: str) -> list[Example]:
        if params.dev_file is not None:
            docs = read_documents(params.train_file if split == "train" else params.dev_file, params)
        else:
            docs = _held_out(read_documents(params.train_file, params), params, split)
        limit = params.max_train_samples if split == "train" else params.max_dev_samples
        return [Example(text, id=line) for line, text in docs[:limit]]


def _held_out(docs: list[tuple[int, str]], params: TextParams, split: str) -> list[tuple[int, str]]:
    """``dev_fraction`` of the documents (at least one), the same ones in every run; the rest train."""
    import numpy as np

    if len(docs) < 2:
        raise DataError(f"{params.train_file}: {len(docs)} document; holding out dev needs 2 (or set dev_file)")
    n_dev = min(len(docs) - 1, max(1, round(params.dev_fraction * len(docs))))
    dev = set(np.random.default_rng(0).permutation(len(docs))[:n_dev].tolist())
    return [d for i, d in enumerate(docs) if (i in dev) == (split == "dev")]


def read_documents(path: str, params: TextParams) -> list[tuple[int, str]]:
    """``(line, text)`` of every non-blank document of a .txt or .jsonl file; DataError naming file and line."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"data file {p} does not exist; check task.params.train_file / dev_file")
    fmt = params.format if params.format != "auto" else ("jsonl" if p.suffix in (".jsonl", ".json") else "txt")
    docs = []
    for line, raw in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
        text = raw
        if fmt == "jsonl" and raw.strip():
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}:{line}: not valid JSON ({exc.msg}); each line must be one object") from None
            if not isinstance(row, dict) or not isinstance(row.get(params.text_field), str):
                raise DataError(f"{p}:{line}: no text field {params.text_field!r}; set task.params.text_field")
            text = row[params.text_field]
        if text.strip():
            docs.append((line, text.strip()))
    if not docs:
        raise DataError(f"{p}: no line holds text; a causal-LM task needs text to train on")
    return docs
