"""oneDNN-prepacked linear layers for float32 CPU evaluation: same outputs, restored on exit, only where they apply."""

from __future__ import annotations

import pytest
import torch

from peftkit.evaluation.prepack import _supported, packed_linears


def _bert(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 40, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


def test_supported_wherever_torch_has_onednn():
    # the check behind packing must not quietly fail on a build that has oneDNN (x86 CPU wheels do)
    assert _supported() == torch.backends.mkldnn.is_available()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_packed_model_gives_the_same_logits_and_is_restored(tiny_bert):
    model, batch = _bert(tiny_bert), _batch()
    linears = _linears(model)
    with torch.inference_mode():
        plain = model(**batch).logits
        with packed_linears(model, "cpu") as n:
            assert n == len(linears) > 0
            assert all("forward" in vars(m) for m in linears)
            packed = model(**batch).logits
        again = model(**batch).logits
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-6)
    assert not any("forward" in vars(m) for m in linears)  # each module's own forward is back
    assert torch.equal(again, plain)
    assert all(type(m) is torch.nn.Linear for m in linears)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_packed_path_is_really_taken(tiny_bert, monkeypatch):
    model, batch = _bert(tiny_bert), _batch()
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or real(*a), raising=False)
    with torch.inference_mode(), packed_linears(model, "cpu") as n:
        model(**batch)
    assert len(calls) == n  # every packed layer ran through oneDNN once


@pytest.mark.parametrize(
    "device, precision, enabled", [("cpu", "bf16", True), ("meta", "no", True), ("cpu", "no", False)]
)
def test_nothing_is_packed_where_it_does_not_apply(tiny_bert, monkeypatch, device, precision, enabled):
    model = _bert(tiny_bert)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", enabled)
    with packed_linears(model, device, precision) as n:
        assert n == 0
        assert not any("forward" in vars(m) for m in model.modules())


def test_subclasses_hooked_and_half_precision_layers_keep_their_forward():
    class Special(torch.nn.Linear):
        pass

    plain, special, hooked, half = (
        torch.nn.Linear(4, 4),
        Special(4, 4),
        torch.nn.Linear(4, 4),
        torch.nn.Linear(4, 4).bfloat16(),
    )
    hook = hooked.forward
    hooked.forward = lambda x: hook(x) + 1  # as accelerate's hooks wrap a module's forward
    model = torch.nn.Sequential(plain, special, hooked, half)
    with packed_linears(model, "cpu") as n:
        assert n == (1 if _supported() else 0)
        assert "forward" not in vars(special) and "forward" not in vars(half)
    assert hooked.forward(torch.zeros(1, 4)).sub(hook(torch.zeros(1, 4))).eq(1).all()  # the wrapper survives


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_gradients_still_flow_inside_the_block():
    layer = torch.nn.Linear(6, 3)
    x = torch.randn(2, 6)
    with packed_linears(layer, "cpu") as n:
        assert n == 1
        layer(x).sum().backward()  # grad mode: the layer's own forward, so autograd works
    assert layer.weight.grad is not None


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_unmerged_lora_evaluates_the_same_packed(tiny_bert):
    from peft import LoraConfig, get_peft_model

    model = _bert(tiny_bert)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero; make the adapter change the output
    model.eval()
    batch = _batch()
    with torch.inference_mode():
        plain = model(**batch).logits
        with packed_linears(model, "cpu") as n:
            assert n > 0
            packed = model(**batch).logits
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-6)
