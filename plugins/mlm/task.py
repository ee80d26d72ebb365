"""The ``mlm`` task: your own raw text, one document a line (``.txt``) or a text field of jsonl objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftkit import DataError, Example
from peftkit.kit import missing_files
from peftkit_plugins.mlm.config import MlmParams

HELD_OUT_SEED = 0  # which documents are held out does not follow train.seed: every run is scored on the same text


class MlmTask:
    """Raw text for masked-LM pretraining; dev metrics on held-out text: masked-token accuracy, loss, perplexity."""

    name = "mlm"
    summary = "Continue masked-LM pretraining on your own text (.txt or jsonl); masked accuracy, loss, perplexity."
    params_model = MlmParams
    metric = "masked_accuracy"
    splits = ("train", "dev")
    objective = "masked-lm"

    def check_data(self, params: MlmParams) -> list[tuple[str, str]]:
        """For `peftkit validate`: the text files the recipe names exist on this machine."""
        return missing_files(params, ("train_file", "dev_file"))

    def objective_options(self, params: MlmParams) -> dict[str, Any]:
        return {"masking": params.masking, "mask_probability": params.mask_probability, "pack": params.pack}

    def label_names(self, params: MlmParams) -> list[str]:
        """None: the targets are the masked tokens themselves."""
        return []

    def load_split(self, params: MlmParams, split: str) -> list[Example]:
        if params.dev_file is not None:
            path = params.train_file if split == "train" else params.dev_file
            docs = read_documents(path, params.format, params.text_field)
        else:
            docs = _held_out(read_documents(params.train_file, params.format, params.text_field), params, split)
        limit = params.max_train_samples if split == "train" else params.max_dev_samples
        return [Example(text, id=line) for line, text in docs[:limit]]

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        """Masked-token accuracy from the predicted and true ids of the masked tokens."""
        import numpy as np

        p, r = np.asarray(predictions), np.asarray(references)
        return {"masked_accuracy": float((p == r).mean()) if len(r) else 0.0}

    def prediction_file(self, params: MlmParams) -> str:
        return "mlm_predictions.jsonl"

    def format_prediction(self, example: Example, label_id: int, params: MlmParams) -> dict[str, Any]:
        return {"id": example.id}


def _held_out(docs: list[tuple[int, str]], params: MlmParams, split: str) -> list[tuple[int, str]]:
    """``dev_fraction`` of the documents (at least one), chosen by a fixed seed; the rest train."""
    import numpy as np

    if len(docs) < 2:
        raise DataError(
            f"{params.train_file}: {len(docs)} document; holding some out as dev needs at least 2 "
            "(add text, or set task.params.dev_file)"
        )
    n_dev = min(len(docs) - 1, max(1, round(params.dev_fraction * len(docs))))
    dev = set(np.random.default_rng(HELD_OUT_SEED).permutation(len(docs))[:n_dev].tolist())
    return [d for i, d in enumerate(docs) if (i in dev) == (split == "dev")]


def read_documents(path: str | Path, fmt: str = "auto", text_field: str = "text") -> list[tuple[int, str]]:
    """``(line number, text)`` of every non-blank document; DataError naming the file and line for a line that is
    not UTF-8, not a JSON object with ``text_field``, or a file with no text at all."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; check task.params.train_file / dev_file")
    if fmt == "auto":
        fmt = "jsonl" if path.suffix.lower() in {".jsonl", ".json", ".ndjson"} else "txt"
    docs = []
    with path.open("rb") as fh:
        for line, raw in enumerate(fh, 1):
            text = _decode(raw, path, line)
            if fmt == "jsonl" and text.strip():
                text = _json_text(text, text_field, path, line)
            if text.strip():
                docs.append((line, text.strip()))
    if not docs:
        raise DataError(f"{path}: the corpus is empty (no line holds text); a masked-LM task needs text to train on")
    return docs


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); convert the "
            "file to UTF-8 (for GBK: iconv -f GBK -t UTF-8 in > out)"
        ) from None
    return text.lstrip("\ufeff") if line == 1 else text


def _json_text(text: str, text_field: str, path: Path, line: int) -> str:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{line}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
    if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
        got = f"fields: {', '.join(map(str, row))}" if isinstance(row, dict) else type(row).__name__
        raise DataError(
            f"{path}:{line}: no text field {text_field!r} ({got}); set task.params.text_field to the field with the text"
        )
    return row[text_field]
