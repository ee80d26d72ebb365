"""``peftkit export RUN_DIR --out DIR``: a finished run as a standard transformers folder anyone can load.

Merged (the method folded into the base weights, a plain ``AutoModelForSequenceClassification`` folder)
or, with ``adapter=True``, the adapter alone in peft's format. Both carry the tokenizer, ``config.json``
with the task's own ``id2label``/``label2id``, a Hugging Face model card and ``peftkit_export.json``
(what ``peftkit serve`` reads back).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError
from peftkit.serve.card import base_facts, model_card, read_metrics

log = logging.getLogger("peftkit")

EXPORT_FILE = "peftkit_export.json"
QUANTIZE_CHOICES = ("int8",)


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every ``nn.Linear`` (weights int8, activations quantized per batch).

    Chosen for CPU serving because it needs no calibration data and keeps the folder float32 (the int8
    weights are made at load time in about a second); measured accuracy and speed go into the card.
    """
    import torch
    from torch.ao.quantization import quantize_dynamic

    model.eval()
    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _fresh_out(out: Path, overwrite: bool) -> Path:
    """A temporary sibling of ``out`` to write into; refuses a non-empty ``out`` unless ``overwrite``."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise PeftkitError(f"--out {out} exists and is not empty; choose another folder or pass --overwrite")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _save_tokenizer(s: Any, out: Path) -> None:
    """The run's tokenizer, cut at the run's max length; without token types when the model takes none
    (else ``pipeline`` would pass them to a model with a one-row type table)."""
    tok = s.tokenizer
    tok.model_max_length = s.recipe.data.max_length
    if not s.use_token_types and "token_type_ids" in tok.model_input_names:
        tok.model_input_names = [n for n in tok.model_input_names if n != "token_type_ids"]
    tok.save_pretrained(str(out))
    if not s.use_token_types:  # the saved config must say so too, or a reload brings the types back
        cfg_path = out / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["model_input_names"] = list(tok.model_input_names)
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")


def _save_adapter(s: Any, model: Any, out: Path) -> None:
    if not hasattr(model, "peft_config"):
        raise PeftkitError(
            f"--adapter: method {s.method.name!r} saves no peft adapter (it changes the base weights); "
            "export it without --adapter to get the merged model"
        )
    model.save_pretrained(str(out))
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    # the base folder this adapter goes on: a hub id where the recipe named one, else the local folder
    source = s.recipe.model.source
    cfg["base_model_name_or_path"] = source.partition(":")[2] if source.startswith("hub:") else str(s.model_path)
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def _merged(s: Any, model: Any) -> Any:
    if not getattr(s.method, "can_merge", False):
        raise PeftkitError(
            f"method {s.method.name!r} cannot be merged into the base weights; export it with --adapter "
            "(peft format, loaded over the base) instead"
        )
    if s.recipe.model.quantization:
        raise PeftkitError(
            "the run trained on a quantized base, which cannot take a merged update without losing accuracy; "
            "export it with --adapter"
        )
    merged = s.method.merge(model)
    merged.eval()
    labels = list(s.labels)
    merged.config.id2label = dict(enumerate(labels))
    merged.config.label2id = {name: i for i, name in enumerate(labels)}
    return merged


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    adapter: bool = False,
    quantize: str | None = None,
    overwrite: bool = False,
    eval_rows: int = 1000,
    overrides: list[str] | None = None,
) -> Path:
    """Write ``out``: the run as a transformers folder (merged, or ``adapter`` only) with tokenizer and card.

    Args:
        run_dir: a finished run's ``output_dir``.
        out: the folder to create.
        adapter: write only the adapter in peft's format instead of merging it.
        quantize: ``"int8"`` marks the folder for dynamic int8 serving and measures it against float32
            on the first ``eval_rows`` dev rows (accuracy and speed go into the card).
        overwrite: replace a non-empty ``out``.
        eval_rows: dev rows for the int8 measurement.
        overrides: ``key=value`` as for ``peftkit predict`` (e.g. where the dev data is now).

    Returns:
        ``out``.
    """
    from peftkit.evaluation.runs import load_run

    run_dir, out = Path(run_dir), Path(out)
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise PeftkitError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")
    if quantize and adapter:
        raise PeftkitError("--quantize applies to the merged model; drop --adapter to export an int8 variant")
    s, model = load_run(run_dir, overrides=overrides, splits=("dev",) if quantize else ())
    tmp = _fresh_out(out, overwrite)
    try:
        if adapter:
            _save_adapter(s, model, tmp)
        else:
            model = _merged(s, model)
            model.save_pretrained(str(tmp), safe_serialization=True)
        _save_tokenizer(s, tmp)
        report = measure_int8(s, model, eval_rows) if quantize else None
        meta = _meta(s, run_dir, out, adapter, quantize, report)
        (tmp / EXPORT_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        recipe_text = (run_dir / "recipe.yaml").read_text(encoding="utf-8")
        (tmp / "README.md").write_text(model_card(meta, recipe_text, read_metrics(run_dir)), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s (%s)", run_dir, out, "adapter" if adapter else "merged")
    return out


def _meta(s: Any, run_dir: Path, out: Path, adapter: bool, quantize: str | None, report: Any) -> dict[str, Any]:
    dev = s.data.get("dev")
    return {
        "name": out.name,
        "run": str(run_dir.resolve()),
        "source": s.recipe.model.source,
        "base": base_facts(s.recipe.model.source, s.model_path),
        "method": s.method.name,
        "task": s.task.name,
        "labels": list(s.labels),
        "max_length": s.recipe.data.max_length,
        "pairs": bool(dev and dev.examples and dev.examples[0].text_pair is not None),
        "adapter": adapter,
        "quantize": quantize,
        "quantize_report": report,
    }


def measure_int8(s: Any, model: Any, rows: int) -> dict[str, Any]:
    """Dev score, throughput and agreement of float32 and dynamic-int8 copies of ``model`` (CPU)."""
    import copy

    import numpy as np
    import torch

    from peftkit.build.batches import Encoded
    from peftkit.evaluation.evaluate import eval_batch_size, predict_logits, scores
    from peftkit.recipe import selection_metric

    dev = s.data["dev"]
    n = min(rows, len(dev))
    part = Encoded(dev.input_ids[:n], dev.labels[:n], dev.examples[:n], 0, (dev.token_type_ids or [])[:n] or None)
    bs, key = eval_batch_size(s.recipe), selection_metric(s.recipe, s.task)
    out: dict[str, Any] = {"rows": n, "batch_size": bs, "metric": key, "threads": torch.get_num_threads()}
    ref = None
    for name, m in (("float32", model), ("int8", quantize_int8(copy.deepcopy(model)))):
        t0 = time.perf_counter()
        logits, _ = predict_logits(m, part, bs, s.pad_id, torch.device("cpu"))
        seconds = time.perf_counter() - t0
        preds = logits.argmax(-1)
        ref = preds if ref is None else ref
        out[name] = {
            "score": float(scores(s.task, preds, part.labels, None)[key]),
            "samples_per_second": n / max(seconds, 1e-9),
            "agreement": float(np.mean(preds == ref)),
        }
        log.info("%s: %s=%.4f, %.1f samples/s", name, key, out[name]["score"], out[name]["samples_per_second"])
    return out
