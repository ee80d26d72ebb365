"""Quantized bases (bitsandbytes 4/8-bit, on CPU): loading, training, exact reload, refusals, memory accounting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import bitsandbytes as bnb  # a dependency of peftkit: CPU 4/8-bit layers since 0.50
import pytest
import torch

from peftkit.build.model import load_model
from peftkit.build.setup import build_model, prepare
from peftkit.errors import PeftkitError, RecipeError
from peftkit.evaluation.evaluate import predict_logits
from peftkit.kit.peft_method import PeftMethod
from peftkit.kit.tiny import make_tiny_bert, tiny_recipe
from peftkit.plugin.architectures import ENCODER
from peftkit.plugin.registry import get_registry
from peftkit.recipe import validate
from peftkit.train.loop import run
from peftkit.train.memory import model_bytes

QUANTS = {
    "nf4": {"bits": 4, "type": "nf4", "double_quant": False},
    "fp4-dq": {"bits": 4, "type": "fp4", "double_quant": True},
    "nf4-bf16": {"bits": 4, "type": "nf4", "compute_dtype": "bfloat16"},
    "int8": {"bits": 8},
}
_QUANT_PARAMS = {"Params4bit", "Int8Params"}


@pytest.fixture(scope="module")
def bert_no_pooler(tmp_path_factory) -> Path:
    """Like e5: no pooler in the checkpoint, so the randomly initialised pooler is a head that trains."""
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "bert-nopool", with_pooler=False)


def _setup(
    model_dir: Path,
    data: dict,
    out: Path,
    quant: dict | None,
    method: str = "lora",
    params: dict | None = None,
    **train,
):
    recipe = tiny_recipe(model_dir, data, out, method=method, method_params=params, **train)
    recipe["model"]["quantization"] = quant
    return prepare(validate(recipe), get_registry())


def _load(model_dir: Path, data: dict, tmp_path: Path, quant: dict | None):
    s = _setup(model_dir, data, tmp_path / "o", quant)
    return load_model(s.model_path, s.recipe.model, s.labels, s.tokenizer)


def _block_linears(model) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if re.fullmatch(ENCODER.all_linear, n)}


@pytest.mark.parametrize("name", list(QUANTS))
def test_blocks_quantized_heads_float(name, bert_no_pooler, tiny_data, tmp_path):
    q = QUANTS[name]
    model, heads = _load(bert_no_pooler, tiny_data, tmp_path, q)
    layer_cls = bnb.nn.Linear4bit if q["bits"] == 4 else bnb.nn.Linear8bitLt
    blocks = _block_linears(model)
    assert len(blocks) == 12 and all(isinstance(m, layer_cls) for m in blocks.values()), blocks
    assert heads == ["classifier", "bert.pooler"]
    for head in ("classifier", "bert.pooler.dense"):
        mod = model.get_submodule(head)
        assert type(mod) is torch.nn.Linear and mod.weight.dtype == torch.float32, (head, type(mod))
    if q["bits"] == 4:
        state = blocks["bert.encoder.layer.0.attention.self.query"].weight.quant_state
        assert state.quant_type == q["type"] and state.nested == q.get("double_quant", True)
        assert all(m.compute_dtype == getattr(torch, q.get("compute_dtype", "float32")) for m in blocks.values())
    # one forward + backward through the quantized blocks into a float head (bf16 compute included)
    batch = {"input_ids": torch.tensor([[2, 7, 13, 3]]), "labels": torch.tensor([1])}
    model.classifier.weight.requires_grad_(True)
    out = model(**batch)
    out.loss.backward()
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    assert model.classifier.weight.grad.abs().sum() > 0


def test_pooler_from_checkpoint_stays_float(tiny_bert, tiny_data, tmp_path):
    """A pooler the checkpoint has is not trained, but is not quantized either: the skip pattern must
    reach ``bert.pooler.dense`` (a bare ``pooler`` entry does not)."""
    model, heads = _load(tiny_bert, tiny_data, tmp_path, QUANTS["nf4"])
    assert heads == ["classifier"]
    assert type(model.get_submodule("bert.pooler.dense")) is torch.nn.Linear


def test_modules_the_method_trains_stay_float(bert_no_pooler, tiny_data, tmp_path):
    """A method whose peft config trains a block module in full (modules_to_save) gets it unquantized."""
    lora = get_registry().methods["lora"]

    def make_config(p, ctx):
        config = lora.make_config(p, ctx)
        config.modules_to_save = ["intermediate.dense"]
        return config

    method = PeftMethod(name="lora-mts", summary="test", params_model=lora.params_model, make_config=make_config)
    s = _setup(bert_no_pooler, tiny_data, tmp_path / "o", QUANTS["nf4"])
    s.method = method
    model, _ = build_model(s, 10)
    for i in range(2):
        inter = model.get_submodule(f"base_model.model.bert.encoder.layer.{i}.intermediate.dense")
        assert type(inter.modules_to_save["default"]) is torch.nn.Linear
        assert inter.modules_to_save["default"].weight.requires_grad
        out = model.get_submodule(f"base_model.model.bert.encoder.layer.{i}.output.dense")
        assert isinstance(out.base_layer, bnb.nn.Linear4bit)
    batch = {"input_ids": torch.tensor([[2, 7, 13, 3]]), "labels": torch.tensor([0])}
    model(**batch).loss.backward()


@pytest.mark.parametrize("name", ["fp4-dq", "int8"])  # nf4 + double quant: the method tests below
def test_lora_trains_and_reloads_exactly(name, bert_no_pooler, tiny_data, tmp_path):
    recipe = tiny_recipe(
        bert_no_pooler,
        tiny_data,
        tmp_path / "out",
        method_params={"r": 8, "dropout": 0.0},
        lr=1e-2,
        max_steps=16,
        batch_size=96,
        warmup=0,
    )
    recipe["model"]["quantization"] = QUANTS[name]
    recipe["eval"] = {"every": 8}
    m = run(validate(recipe))
    assert [h["step"] for h in m["history"]] == [8, 16]
    # training lowers the loss (chance: ln 2 = 0.693) and learns the task (chance accuracy: 0.5)
    assert m["history"][-1]["eval_loss"] < 0.5 and m["best"]["accuracy"] >= 0.75
    # final = the saved adapter evaluated on a freshly quantized base: same logits => same loss and accuracy
    assert m["final"]["accuracy"] == m["best"]["accuracy"]
    assert m["final"]["eval_loss"] == pytest.approx(m["best"]["eval_loss"], abs=1e-6)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "model" / "adapter_model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert any(k.startswith("base_model.model.bert.pooler") for k in f.keys())
    assert dtypes == {torch.float32}
    mem = json.loads((tmp_path / "out" / "metrics.json").read_text())["memory"]
    assert mem["device"] == "cpu" and mem["peak_bytes"] == mem["peak_rss_bytes"] > mem["model_bytes"] > 0


def test_model_bytes_shrink_with_bits(bert_no_pooler, tiny_data, tmp_path):
    sizes = {
        k: model_bytes(_load(bert_no_pooler, tiny_data, tmp_path, q)[0])
        for k, q in (("fp32", None), ("int8", QUANTS["int8"]), ("nf4", QUANTS["nf4"]))
    }
    # 16k of the tiny model's 30k weights sit in the blocks; embeddings and heads stay fp32
    assert sizes["nf4"] < 0.55 * sizes["fp32"] and sizes["nf4"] < sizes["int8"] < 0.65 * sizes["fp32"], sizes
    model = _load(bert_no_pooler, tiny_data, tmp_path, QUANTS["nf4"])[0]
    packed_only = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    assert model_bytes(model) > packed_only  # the block scales are counted too


@pytest.mark.parametrize("bits", [4, 8])
def test_merge_into_quantized_base_refused(bits, bert_no_pooler, tiny_data, tmp_path):
    s = _setup(bert_no_pooler, tiny_data, tmp_path / "o", QUANTS["nf4"] if bits == 4 else QUANTS["int8"])
    model, _ = build_model(s, 10)
    with pytest.raises(PeftkitError, match=r"quantized base.*model\.quantization: null.*merge, and export"):
        s.method.merge(model)


def test_merge_alternative_dequantized_copy(bert_no_pooler, tiny_data, tmp_path):
    """What the refusal suggests, as docs/quantization.md shows it: the adapter trained on a 4-bit base
    loads onto the float base, merges and exports, and the merged model gives the unmerged logits."""
    import yaml

    from peftkit.recipe import load_recipe, resolved_dict

    run_dir = tmp_path / "run"
    s = _setup(bert_no_pooler, tiny_data, run_dir, QUANTS["nf4"])
    torch.manual_seed(0)
    model, _ = build_model(s, 10)
    for p in model.parameters():  # stand-in for training: move every trainable tensor off its init
        if p.requires_grad:
            p.data += 0.05 * torch.randn_like(p)
    s.method.save(model, run_dir / "model")
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(resolved_dict(s.recipe, s.registry)))
    quant_logits, _ = predict_logits(model, s.data["dev"], 16, s.pad_id, "cpu")
    # the docs' recipe: float base + saved adapter, merged, exported
    recipe = load_recipe(run_dir / "recipe.yaml", ["model.quantization=null", f"output_dir={run_dir}"])
    setup = prepare(recipe, get_registry(), splits=())
    unmerged, _ = build_model(setup, trained=run_dir / "model")
    float_logits, _ = predict_logits(unmerged, s.data["dev"], 16, s.pad_id, "cpu")
    merged = setup.method.merge(unmerged)
    merged.save_pretrained(run_dir / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    from transformers import AutoModelForSequenceClassification

    exported = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "merged"))
    merged_logits, _ = predict_logits(exported, s.data["dev"], 16, s.pad_id, "cpu")
    assert merged_logits == pytest.approx(float_logits, abs=1e-5)
    # the float base differs from the 4-bit one only by quantization error
    assert merged_logits == pytest.approx(quant_logits, abs=0.1)
    assert not merged_logits == pytest.approx(quant_logits, abs=1e-6)


def _method_bits() -> list[tuple[str, int]]:
    return [(name, bits) for name in sorted(get_registry().methods) for bits in (4, 8)]


@pytest.mark.parametrize("name,bits", _method_bits())
def test_validate_checks_quantized_compatibility(name, bits, tiny_bert, tiny_data, tmp_path):
    method = get_registry().methods[name]
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o", method=name)
    recipe["model"]["quantization"] = {"bits": bits}
    if bits in method.quantized_bits:
        validate(recipe)
        return
    with pytest.raises(RecipeError) as exc:
        validate(recipe)
    msg = str(exc.value)
    assert f"model.quantization: method {name!r} cannot train a {bits}-bit base" in msg
    assert "Remove model.quantization" in msg and "lora" in msg.split("use one of:")[-1]


@pytest.mark.parametrize("name,why", [("full", "frozen integers"), ("bitfit", "bias terms alone cannot compensate")])
@pytest.mark.parametrize("bits", [4, 8])
def test_full_fine_tuning_and_bitfit_refuse_quantized_bases(name, why, bits, tiny_bert, tiny_data, tmp_path):
    if name not in get_registry().methods:
        pytest.skip(f"method {name!r} is not installed")
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o", method=name)
    recipe["model"]["quantization"] = {"bits": bits}
    with pytest.raises(RecipeError, match=rf"cannot train a {bits}-bit base: .*{why}"):
        validate(recipe)


def _quantizable() -> list[tuple[str, int]]:
    return [(n, b) for n, b in _method_bits() if b in get_registry().methods[n].quantized_bits]


@pytest.mark.parametrize("name,bits", _quantizable())
def test_method_trains_on_quantized_base_and_reloads(name, bits, bert_no_pooler, tiny_data, tmp_path):
    """Every method that declares a bit width trains on it, only float tensors train, and the saved
    result on a freshly quantized base gives the same logits."""
    s = _setup(bert_no_pooler, tiny_data, tmp_path / "o", {"bits": bits}, method=name)
    torch.manual_seed(0)
    model, _ = build_model(s, 20)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        p.is_floating_point() and type(p).__name__ not in _QUANT_PARAMS for p in trainable.values()
    )
    before = {n: p.detach().clone() for n, p in trainable.items()}
    opt = torch.optim.AdamW(trainable.values(), lr=1e-2)
    from peftkit.build.batches import collate

    batch = collate(s.data["train"], list(range(32)), s.pad_id)
    model.train()
    for _ in range(2):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())
    logits, _ = predict_logits(model, s.data["dev"], 16, s.pad_id, "cpu")
    s.method.save(model, tmp_path / "saved")
    reloaded, _ = build_model(s, trained=tmp_path / "saved")
    again, _ = predict_logits(reloaded, s.data["dev"], 16, s.pad_id, "cpu")
    assert again == pytest.approx(logits, abs=1e-5)


def test_benchmark_recipes_differ_only_in_quantization(tmp_path):
    from benchmarks.quantization import BASE_RECIPE, _parser, build_recipes, table

    a = _parser().parse_args(
        [
            "--train-rows",
            "100",
            "--dev-rows",
            "40",
            "--max-length",
            "48",
            "--output",
            str(tmp_path),
            "--set",
            "train.batch_size=16",
        ]
    )
    recipes = build_recipes(BASE_RECIPE, ["fp32", "int8", "nf4"], a)
    assert recipes["fp32"]["model"].get("quantization") is None and recipes["nf4"]["model"]["quantization"]["bits"] == 4
    strip = [{**r, "model": {**r["model"], "quantization": None}, "output_dir": ""} for r in recipes.values()]
    assert strip[0] == strip[1] == strip[2]
    r = recipes["int8"]
    assert r["train"]["max_steps"] == 7 and r["eval"]["every"] == 8  # ceil(100 / 16); scored once, after the timed loop
    assert r["train"]["batch_size"] == 16 and BASE_RECIPE["train"]["batch_size"] == 32
    assert r["task"]["params"] == {"max_train_samples": 100, "max_dev_samples": 40} and r["data"]["max_length"] == 48
    assert BASE_RECIPE["task"]["params"] == {}  # the shared base is not modified
    for rec in recipes.values():
        validate(rec)
    row = {"peak_bytes": 4 << 20, "model_bytes": 2 << 20, "samples_per_second": 10.0, "accuracy": 0.8}
    out = table({"fp32": row, "nf4": {**row, "model_bytes": 1 << 20, "samples_per_second": 5.0}}, "accuracy")
    assert "| nf4 | 4 MiB | 1.00 | 1 MiB | 0.50 | 5.0 | 0.50 | 0.8000 | 1.00 |" in out.splitlines()
