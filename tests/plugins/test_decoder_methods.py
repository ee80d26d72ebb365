"""Decoder conformance: every registered method that trains the causal-lm objective runs lm/sft on the tiny Llama
(trains its own parameters, lowers the loss, and reloads to the metric measured in training); one that does not
declare it is refused by `peftkit validate`, not deep inside a run."""

from __future__ import annotations

import json

import pytest

from peftkit.kit.peft_method import MethodNotApplicable
from peftkit.plugin.contracts import method_objectives
from peftkit.plugin.registry import get_registry

LM_HEAD = 20 * 32  # the tiny Llama's output layer (vocab 20 x hidden 32), absent from its checkpoint: it trains too
CASES = [(name, {}) for name in sorted(get_registry().methods)] + [("lora", {"use_dora": True})]


def _files(tmp_path):
    from peftkit.kit.tiny import sentiment_rows

    files = {}
    for split, n, seed in (("train", 32, 0), ("dev", 8, 1)):
        rows = [
            {"instruction": r["text"], "output": "good" if r["label"] == "pos" else "bad"}
            for r in sentiment_rows(n, seed)
        ]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def sft_recipe(model_dir, files, out, method, params, **train):
    return {
        "model": {"source": f"local:{model_dir}"},
        "method": {"name": method, "params": params},
        "task": {
            "name": "lm/sft",
            "params": {
                "train_file": str(files["train"]),
                "dev_file": str(files["dev"]),
                "template": "alpaca",
                "generation": {"max_new_tokens": 2, "samples": 4},
            },
        },
        "data": {"max_length": 32},
        "train": {"lr": 2e-2, "log_every": 2, "seed": 0, **train},
        "output_dir": str(out),
    }


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{'-dora' if p else ''}" for n, p in CASES])
def test_method_trains_a_decoder_on_lm_sft(name, params, tiny_llama, tmp_path):
    import peftkit
    from peftkit import RecipeError
    from peftkit.recipe import validate

    method = get_registry().methods[name]
    heads = method_objectives(method)
    recipe = sft_recipe(tiny_llama, _files(tmp_path), tmp_path / "run", name, params, max_steps=8, batch_size=4)
    if heads is not None and "causal-lm" not in heads:
        with pytest.raises(RecipeError, match="cannot train task 'lm/sft'"):
            validate(recipe)
        return
    try:
        peftkit.run(validate(recipe))
    except MethodNotApplicable as exc:
        pytest.skip(f"{name} refuses the tiny Llama: {exc}")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    loss = m["train"]["loss"]
    assert sum(loss[-2:]) < sum(loss[:2]), loss
    assert m["params"]["trainable"] > LM_HEAD  # the method's own parameters train, not only the output layer
    assert m["final"]["token_accuracy"] == pytest.approx(m["best"]["token_accuracy"])
    assert m["final"]["eval_loss"] == pytest.approx(m["history"][-1]["eval_loss"], rel=1e-3) or m["eval"]["merged"]


def test_qlora_trains_a_decoder_on_a_4bit_base(tiny_llama, tmp_path):
    """LoRA on a bitsandbytes nf4 base (CPU here): lm/sft trains and reloads to the metric of training."""
    pytest.importorskip("bitsandbytes")
    import peftkit
    from peftkit.recipe import validate

    recipe = sft_recipe(tiny_llama, _files(tmp_path), tmp_path / "run", "lora", {}, max_steps=8, batch_size=4)
    recipe["model"]["quantization"] = {"bits": 4, "compute_dtype": "float32"}
    peftkit.run(validate(recipe))
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sum(m["train"]["loss"][-2:]) < sum(m["train"]["loss"][:2])
    assert m["final"]["token_accuracy"] == pytest.approx(m["best"]["token_accuracy"])
