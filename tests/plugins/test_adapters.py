"""Bottleneck adapters: placement, sizes, near-identity init, peft-format save/load, merge refusal, runs."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from peftkit.errors import PeftkitError
from peftkit.plugin.contracts import ApplyContext
from peftkit.plugin.registry import get_registry
from peftkit_plugins.adapters.config import AdapterParams

LABELS = ["neg", "pos"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run several times faster on one thread than on contending ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _base(path, seed=0):
    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.recipe import ModelConfig

    cfg = ModelConfig(source=f"local:{path}")
    tok = load_tokenizer(path, cfg)
    torch.manual_seed(seed)
    model, heads = load_model(path, cfg, LABELS, tok)
    return model, heads, tok


def _apply(path, **params):
    base, heads, tok = _base(path)
    m = get_registry().methods["adapters"]
    model = m.apply(base, AdapterParams(**params), ApplyContext(heads, base.config.model_type, 10))
    return m, model, tok


def _adapted(model):
    from peftkit_plugins.adapters.tuner import BottleneckLayer

    return sorted(
        n.removeprefix("base_model.model.") for n, mod in model.named_modules() if isinstance(mod, BottleneckLayer)
    )


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_placement(kind, request):
    path = request.getfixturevalue(f"tiny_{kind}")
    _, houlsby, _ = _apply(path, config="houlsby")
    _, pfeiffer, _ = _apply(path, config="pfeiffer")
    if kind == "bert":
        ffn = [f"bert.encoder.layer.{i}.output.dense" for i in (0, 1)]
        attn = [f"bert.encoder.layer.{i}.attention.output.dense" for i in (0, 1)]
    else:
        ffn = [f"model.layers.{i}.mlp.down_proj" for i in (0, 1)]
        attn = [f"model.layers.{i}.self_attn.o_proj" for i in (0, 1)]
    assert _adapted(houlsby) == sorted(attn + ffn)
    assert _adapted(pfeiffer) == sorted(ffn)


@pytest.mark.parametrize(("params", "width"), [({}, 2), ({"reduction_factor": 4}, 8), ({"bottleneck_size": 5}, 5)])
def test_bottleneck_size_and_exact_parameter_count(tiny_bert, params, width):
    m, model, _ = _apply(tiny_bert, config="houlsby", **params)
    h = 32  # tiny BERT hidden size; the default reduction factor is 16
    adapters = 4 * (2 * h * width + width + h)  # 4 adapters of down (h·w + w) and up (w·h + h)
    head = h * 2 + 2  # the classifier (this checkpoint has its pooler, which stays frozen)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == adapters + head
    facts = m.facts(model)
    assert facts["bottleneck_size"] == width and facts["placement"] == "houlsby"
    assert (facts["after_attention"], facts["after_ffn"]) == (2, 2)


def test_size_options_are_exclusive():
    with pytest.raises(ValidationError, match="either reduction_factor"):
        AdapterParams(reduction_factor=8, bottleneck_size=4)


@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("act", ["relu", "swish"])
def test_near_identity_init(kind, act, request):
    path = request.getfixturevalue(f"tiny_{kind}")
    base, _, tok = _base(path)
    batch = tok(["good movie", "the day was very sad"], padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    base.eval()
    with torch.no_grad():
        ref = base(**batch).logits.clone()
    _, model, _ = _apply(path, config="houlsby", non_linearity=act)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, ref)


def test_saved_adapter_is_a_peft_folder_that_reloads_exactly(tiny_bert, tmp_path):
    from peft import PeftModel

    m, model, tok = _apply(tiny_bert, config="houlsby", bottleneck_size=4)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "bottleneck_up" in n:
                p.normal_(0, 0.5)  # as after training: the adapters now change the output
    batch = tok(["good movie", "the day was very sad"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        ref = model(**batch).logits
    m.save(model, tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "PEFTKIT_BOTTLENECK" and cfg["placement"] == "houlsby"
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    fresh, _, _ = _base(tiny_bert, seed=7)  # another seed: an unsaved head would be re-randomised
    again = PeftModel.from_pretrained(fresh, str(tmp_path / "a")).eval()  # plain peft, once registered
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, ref)


def test_merge_is_refused_with_an_explanation(tiny_bert):
    m, model, _ = _apply(tiny_bert)
    with pytest.raises(PeftkitError, match="cannot be merged.*non-linear"):
        m.merge(model)


def test_registration_is_idempotent():
    from peft.utils.peft_types import PeftType

    from peftkit_plugins.adapters.tuner import register

    register()
    register()
    assert PeftType("PEFTKIT_BOTTLENECK") is PeftType.PEFTKIT_BOTTLENECK
    assert list(PeftType).count(PeftType.PEFTKIT_BOTTLENECK) == 1


def test_run_reports_bottleneck_facts(tiny_data, tmp_path):
    from peftkit.kit.tiny import make_tiny_bert, tiny_recipe
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    # pretrained-scale weights: with 0.02 the tiny model's [CLS] state barely depends on the input
    bert = make_tiny_bert(tmp_path / "bert", init_std=0.2)
    recipe = tiny_recipe(
        bert,
        tiny_data,
        tmp_path / "out",
        method="adapters",
        epochs=3,
        batch_size=16,
        method_params={"config": "houlsby", "bottleneck_size": 8},
    )
    metrics = run(validate(recipe))
    assert metrics["method_facts"]["bottleneck_size"] == 8 and metrics["method_facts"]["adapters"] == 4
    assert metrics["final"]["accuracy"] == metrics["best"]["accuracy"] > 0.6
    assert 0 < metrics["params"]["percent"] < 100
    assert '"bottleneck_size": 8' in (tmp_path / "out" / "train.log").read_text()
