"""AdaLoRA: budget updates every step, schedule derived from the real step count, refusals, exact saves."""

from __future__ import annotations

import json

import pytest
import torch

from peftkit.errors import PeftkitError, RecipeError
from peftkit.kit.tiny import tiny_recipe
from peftkit.plugin.contracts import ApplyContext
from peftkit.recipe import validate
from peftkit.train.loop import run
from peftkit_plugins.adalora.config import AdaLoraParams
from peftkit_plugins.adalora.schedule import derive


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run several times faster on one thread than on contending ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def adalora_run(tmp_path_factory, tiny_bert, tiny_data):
    out = tmp_path_factory.mktemp("adalora") / "out"
    recipe = tiny_recipe(
        tiny_bert,
        tiny_data,
        out,
        method="adalora",
        epochs=2,
        batch_size=8,
        grad_accum=2,
        method_params={"init_r": 6, "target_r": 2},
    )
    recipe["eval"] = {"every": 12}  # one evaluation, at the end: the saved checkpoint is the final one
    metrics = run(validate(recipe))
    return out, metrics


def test_schedule_is_derived_from_the_real_step_count(adalora_run):
    out, metrics = adalora_run
    # 96 rows, batch 8, grad_accum 2 → 6 optimizer steps per epoch, 2 epochs
    assert metrics["total_steps"] == 12
    cfg = json.loads((out / "model" / "adapter_config.json").read_text())
    assert (cfg["total_step"], cfg["tinit"], cfg["tfinal"], cfg["deltaT"]) == (12, 1, 3, 1)


def test_budget_is_reallocated_to_the_target_and_saved(adalora_run):
    out, metrics = adalora_run
    facts = metrics["method_facts"]
    n = len(facts["final_ranks"])
    assert n == 2 * 6  # 2 layers × q, k, v, attention-out, intermediate, output
    assert facts["rank_pattern_final"] and facts["last_allocation_step"] == 12
    assert facts["total_rank"] == facts["budget"]["target_total_rank"] == 2 * n  # pruned from 6·n to 2·n
    assert len(set(facts["final_ranks"].values())) > 1, "the budget should move between matrices"
    cfg = json.loads((out / "model" / "adapter_config.json").read_text())
    assert sum(sum(v) for v in cfg["rank_pattern"].values()) == facts["total_rank"]
    assert "adalora facts" in (out / "train.log").read_text()


def test_reload_reproduces_the_run(adalora_run):
    _, metrics = adalora_run
    assert metrics["final"]["accuracy"] == metrics["best"]["accuracy"]


@pytest.mark.parametrize("resume_at", [5, 10], ids=["while-allocating", "final-phase"])
def test_resume_is_exact(tmp_path, tiny_bert, tiny_data, resume_at):
    """The RankAllocator's estimates and the rank pattern live outside the parameters; checkpoints carry them,
    so a run resumed while the budget shrinks (step 5) or after the pattern is fixed (step 10, past
    total_step - tfinal = 9) ends byte-identical to the uninterrupted run."""
    import shutil

    from peftkit.train.checkpoint import complete

    def recipe(out):
        return validate(
            tiny_recipe(
                tiny_bert,
                tiny_data,
                out,
                method="adalora",
                epochs=2,
                batch_size=8,
                grad_accum=2,
                checkpoint_every=1,
                keep_checkpoints=20,
                method_params={"init_r": 6, "target_r": 2},
            )
        )

    full = run(recipe(tmp_path / "full"))
    assert full["method_facts"]["schedule"] == {"total_step": 12, "tinit": 1, "tfinal": 3, "deltaT": 1}
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    for cp in complete(tmp_path / "resumed" / "checkpoints"):
        if int(cp.name.removeprefix("step-")) > resume_at:
            shutil.rmtree(cp)
    resumed = run(recipe(tmp_path / "resumed"), resume=True)
    assert resumed["train"]["loss"] == full["train"]["loss"]
    assert resumed["final"] == full["final"] and resumed["method_facts"] == full["method_facts"]
    adapter = "model/adapter_model.safetensors"
    assert (tmp_path / "resumed" / adapter).read_bytes() == (tmp_path / "full" / adapter).read_bytes()


def test_impossible_schedule_is_refused_at_validate_time(tiny_bert, tiny_data, tmp_path):
    recipe = tiny_recipe(
        tiny_bert, tiny_data, tmp_path / "o", method="adalora", max_steps=10, method_params={"tinit": 4, "tfinal": 6}
    )
    with pytest.raises(RecipeError) as err:
        validate(recipe)
    msg = str(err.value)
    assert (
        "method.params.tinit" in msg
        and "tinit (4) + tfinal (6) = 10" in msg
        and "10 optimizer steps (train.max_steps)" in msg
    )


def test_impossible_schedule_with_derived_steps_is_refused_at_apply_time():
    p = AdaLoraParams(tfinal=20)
    ctx = ApplyContext(head_modules=["classifier"], model_type="bert", total_steps=12)
    from peftkit_plugins.adalora.method import make_config

    with pytest.raises(PeftkitError, match=r"tfinal \(20\) = 21 is not below the run's 12 optimizer steps \(derived"):
        make_config(p, ctx)


def test_derived_schedule_defaults():
    s = derive(AdaLoraParams(), 1000, "x")
    assert (s.tinit, s.tfinal, s.deltaT) == (100, 300, 6)
    assert derive(AdaLoraParams(deltaT=7, tinit=0), 1000, "x").deltaT == 7


def test_target_rank_above_initial_is_refused():
    with pytest.raises(ValueError, match="target_r"):
        AdaLoraParams(init_r=4, target_r=8)


def _tiny_adalora(tiny_bert, orth: float):
    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.kit.conformance import LABELS
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import ModelConfig

    cfg = ModelConfig(source=f"local:{tiny_bert}")
    tok = load_tokenizer(tiny_bert, cfg)
    torch.manual_seed(0)
    base, heads = load_model(tiny_bert, cfg, LABELS, tok)
    m = get_registry().methods["adalora"]
    model = m.apply(base, AdaLoraParams(orth_reg_weight=orth), ApplyContext(heads, "bert", 10))
    batch = tok(["good movie", "the day was sad"], padding=True, return_tensors="pt")
    return m, model, {**batch, "labels": torch.tensor([1, 0])}


def test_orthogonal_regulariser_is_added_to_the_loss(tiny_bert):
    for orth in (0.0, 0.5):
        _, model, batch = _tiny_adalora(tiny_bert, orth)
        model.eval()
        out = model(**batch)
        ce = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
        extra = float(out.loss - ce)
        assert (extra > 1e-3) if orth else extra == pytest.approx(0, abs=1e-7)


def test_save_between_reallocations_reloads_exactly(tiny_bert, tmp_path):
    """A pruned singular value revived by the optimizer must not be dropped from the file."""
    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.recipe import ModelConfig

    m, model, batch = _tiny_adalora(tiny_bert, 0.5)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in (1, 2, 3):
        model.train()
        model(**batch).loss.backward()
        opt.step()
        if step < 3:  # step 3: an optimizer step without re-allocation, as between two deltaT boundaries
            model.base_model.update_and_allocate(step)
        opt.zero_grad()
    model.base_model.peft_config["default"].rank_pattern = {  # prune half of every matrix
        n: [i % 2 == 0 for i in range(p.numel())] for n, p in model.base_model.model.named_parameters() if "lora_E" in n
    }
    model.eval()
    ref = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    m.save(model, tmp_path / "a")
    cfg = ModelConfig(source=f"local:{tiny_bert}")
    torch.manual_seed(99)
    fresh, _ = load_model(tiny_bert, cfg, ["neg", "pos"], load_tokenizer(tiny_bert, cfg))
    again = m.load(fresh, tmp_path / "a").eval()
    assert torch.allclose(again(**{k: v for k, v in batch.items() if k != "labels"}).logits, ref, atol=1e-6)
