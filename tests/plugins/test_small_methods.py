"""full, bitfit, ia3 and prefix specifics beyond the conformance suite."""

from __future__ import annotations

import json

import pytest
import torch

from peftkit.kit.peft_method import MethodNotApplicable
from peftkit.plugin.contracts import ApplyContext
from peftkit.plugin.registry import get_registry

LABELS = ["neg", "pos"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run several times faster on one thread than on contending ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _setup(path, name, seed=0, **params):
    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.recipe import ModelConfig

    cfg = ModelConfig(source=f"local:{path}")
    tok = load_tokenizer(path, cfg)
    torch.manual_seed(seed)
    base, heads = load_model(path, cfg, LABELS, tok)
    m = get_registry().methods[name]
    model = m.apply(base, m.params_model(**params), ApplyContext(heads, base.config.model_type, 10))
    return m, model, tok, heads


def _batch(tok, bert=True):
    return dict(tok(["good", "the movie was very good"], padding=True, return_tensors="pt", return_token_type_ids=bert))


def test_full_saves_a_plain_hf_folder(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    m, model, tok, _ = _setup(tiny_bert, "full")
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        model.classifier.weight.add_(1.0)  # as after training
    model.eval()
    ref = model(**_batch(tok)).logits
    m.save(model, tmp_path / "m")
    assert {"model.safetensors", "config.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "m")).eval()
    assert torch.equal(plain(**_batch(tok)).logits, ref)


def test_full_can_freeze_embeddings(tiny_bert):
    _, model, _, _ = _setup(tiny_bert, "full", freeze_embeddings=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["bert.embeddings.word_embeddings.weight"]


def test_bitfit_trains_and_saves_only_biases_and_head(tiny_bert, tmp_path):
    from safetensors.torch import load_file

    m, model, _, heads = _setup(tiny_bert, "bitfit")
    train = {n for n, p in model.named_parameters() if p.requires_grad}
    assert train == {n for n, _ in model.named_parameters() if n.endswith(".bias") or n.startswith("classifier.")}
    m.save(model, tmp_path / "b")
    assert set(load_file(str(tmp_path / "b" / "bitfit.safetensors"))) == train
    assert m.facts(model)["trained_tensors"] == len(train)


def test_bitfit_without_layernorm_biases(tiny_bert):
    _, model, _, _ = _setup(tiny_bert, "bitfit", include_layernorm=False)
    train = [n for n, p in model.named_parameters() if p.requires_grad]
    assert train and not any("LayerNorm" in n for n in train)


def test_bitfit_refuses_a_model_without_biases(tiny_llama):
    with pytest.raises(MethodNotApplicable, match="no bias parameters outside the task head"):
        _setup(tiny_llama, "bitfit")


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_ia3_scales_keys_values_and_ffn(kind, request):
    from peft.tuners.ia3 import IA3Layer

    m, model, _, _ = _setup(request.getfixturevalue(f"tiny_{kind}"), "ia3")
    layers = {
        n.removeprefix("base_model.model."): mod.is_feedforward
        for n, mod in model.named_modules()
        if isinstance(mod, IA3Layer)
    }
    if kind == "bert":
        want = {
            f"bert.encoder.layer.{i}.{s}": s == "output.dense"
            for i in (0, 1)
            for s in ("attention.self.key", "attention.self.value", "output.dense")
        }
    else:
        want = {
            f"model.layers.{i}.{s}": s == "mlp.down_proj"
            for i in (0, 1)
            for s in ("self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj")
        }
    assert layers == want
    assert m.facts(model) == {"scaled_modules": 6, "feedforward": 2, "attention": 4}


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_prefix_respects_padding(kind, request):
    """The prefix is attended to, padding is not: a padded row gives the logits it gives alone."""
    m, model, tok, _ = _setup(request.getfixturevalue(f"tiny_{kind}"), "prefix", num_virtual_tokens=4)
    model.eval()
    batch = _batch(tok, bert=kind == "bert")
    alone = dict(tok(["good"], return_tensors="pt", return_token_type_ids=kind == "bert"))
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits[0], model(**alone).logits[0], atol=1e-6)
        assert not torch.allclose(model(**batch).logits[0], model(**batch).logits[1])
    assert m.facts(model) == {"num_virtual_tokens": 4, "layers": 2, "prefix_projection": False}


def test_prefix_starts_as_real_token_activations(tiny_bert):
    """Li & Liang's init: the prefix holds the keys/values the model computes for real tokens."""
    _, model, _, _ = _setup(tiny_bert, "prefix", num_virtual_tokens=3)
    bert = model.get_base_model().bert
    ids = torch.randint(
        bert.embeddings.word_embeddings.num_embeddings, (1, 3), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        key0 = bert.encoder.layer[0].attention.self.key(bert.embeddings(input_ids=ids))[0]  # (3, hidden)
    emb = model.prompt_encoder["default"].embedding.weight  # (3, layers·2·hidden): layer 0 key first
    assert torch.allclose(emb[:, :32], key0, atol=1e-6)


def test_prefix_projection_reloads_exactly(tiny_bert, tmp_path):
    m, model, tok, _ = _setup(tiny_bert, "prefix", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16)
    model.eval()
    with torch.no_grad():
        ref = model(**_batch(tok)).logits
    m.save(model, tmp_path / "p")
    assert json.loads((tmp_path / "p" / "adapter_config.json").read_text())["prefix_projection"] is True
    _, fresh, _, _ = _setup(tiny_bert, "full", seed=5)  # a plain base with another random head
    again = m.load(fresh, tmp_path / "p").eval()
    with torch.no_grad():
        assert torch.allclose(again(**_batch(tok)).logits, ref, atol=1e-6)


def test_default_learning_rates_are_method_appropriate():
    lr = {n: m.default_lr for n, m in get_registry().methods.items()}
    assert lr["full"] <= 5e-5 < lr["bitfit"] <= lr["lora"] == lr["adalora"] == lr["adapters"] < lr["ia3"] < lr["prefix"]


def _causal_prefix(path, n=4):
    """Prefix tuning on the tiny Llama as a language model, its prefix moved well away from its init."""
    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.recipe import ModelConfig

    cfg = ModelConfig(source=f"local:{path}")
    torch.manual_seed(0)
    base, heads = load_model(path, cfg, LABELS, load_tokenizer(path, cfg), head="causal-lm")
    m = get_registry().methods["prefix"]
    model = m.apply(base, m.params_model(num_virtual_tokens=n), ApplyContext(heads, base.config.model_type, 10))
    with torch.no_grad():
        emb = model.prompt_encoder["default"].embedding.weight
        emb.add_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)) * 3 * emb.std())
    return m, model.eval()


def _greedy_by_hand(model, ids, mask, steps):
    """Greedy decoding one argmax at a time, each step a full forward over the whole sequence (no cache)."""
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(input_ids=ids, attention_mask=mask).logits[:, -1].argmax(-1, keepdim=True)
            ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids


def test_prefix_on_a_decoder_generates_with_its_prefix(tiny_llama, tmp_path):
    """generate() answers as the training forward does: equal to greedy decoding by hand through that forward, on a
    left-padded batch, after save and load too; and not as the base does (transformers 5.25 drops the prefix peft
    hands generate() as past_key_values, so without the repair it answered as the base)."""
    import warnings

    from peft import PeftModelForCausalLM

    m, model = _causal_prefix(tiny_llama)
    assert isinstance(model, PeftModelForCausalLM)
    ids = torch.tensor([[5, 9, 11, 7, 3], [0, 0, 4, 8, 12]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Both `past_key_values` and `cache` are set"
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
        with model.disable_adapter():
            plain = model.get_base_model().generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0
            )
    assert torch.equal(out, _greedy_by_hand(model, ids, mask, 6))
    assert not torch.equal(out[:, 5:], plain[:, 5:])
    m.save(model, tmp_path / "p")
    _, fresh = _causal_prefix(tiny_llama)  # another (random) prefix, replaced by the saved one
    with torch.no_grad():
        fresh = m.load(fresh.get_base_model(), tmp_path / "p").eval()
        again = fresh.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(again, out)


def test_prefix_on_a_decoder_counts_positions_from_the_first_real_token(tiny_llama):
    """A left-padded row scores as it does alone (positions from its first real token, as generate() counts them),
    and a right-padded one too: the prefix is trained at the positions it is used at."""
    _, model = _causal_prefix(tiny_llama)
    row = torch.tensor([[4, 8, 12]])
    with torch.no_grad():
        alone = model(input_ids=row, attention_mask=torch.ones_like(row)).logits[0]
        left = model(input_ids=torch.tensor([[0, 0, 4, 8, 12]]), attention_mask=torch.tensor([[0, 0, 1, 1, 1]]))
        right = model(input_ids=torch.tensor([[4, 8, 12, 0, 0]]), attention_mask=torch.tensor([[1, 1, 1, 0, 0]]))
    assert torch.allclose(left.logits[0, 2:], alone, atol=1e-5)
    assert torch.allclose(right.logits[0, :3], alone, atol=1e-5)
