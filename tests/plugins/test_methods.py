"""Method conformance over every registered method (built-in and installed third-party), on tiny BERT and Llama."""

from __future__ import annotations

import pytest

from peftkit.kit.conformance import ConformanceError, cases, check_method, run_conformance
from peftkit.kit.peft_method import MethodNotApplicable

EXPECTED = {"lora", "adalora", "adapters", "full", "ia3", "prefix", "bitfit"}


def test_every_builtin_method_is_registered():
    names = {name for name, _ in cases()}
    assert EXPECTED <= names, f"missing: {EXPECTED - names}"


@pytest.mark.parametrize(("name", "model"), cases())
def test_conformance(name, model, tmp_path):
    try:
        report = run_conformance(name, tmp_path, model=model)
    except MethodNotApplicable as exc:
        pytest.skip(f"{name} refuses tiny {model}: {exc}")
    assert 0 < report.trainable <= report.total
    assert report.loss_after < report.loss_before
    assert report.reload_max_diff <= 1e-5


def _quantizable():
    from peftkit.plugin.registry import get_registry

    return sorted(n for n, m in get_registry().methods.items() if 4 in m.quantized_bits)


@pytest.mark.parametrize("name", _quantizable())
def test_conformance_on_a_4bit_base(name, tmp_path):
    """Methods that claim 4-bit support train and reload exactly on a bitsandbytes nf4 base (on CPU too)."""
    report = run_conformance(name, tmp_path, model="bert", bits=4)
    assert report.reload_max_diff <= 1e-5 and report.merge_max_diff is None


def test_full_refuses_a_quantized_base_at_validate_time(tiny_bert, tiny_data, tmp_path):
    from peftkit.errors import RecipeError
    from peftkit.kit.tiny import tiny_recipe
    from peftkit.recipe import validate

    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o", method="full")
    recipe["model"]["quantization"] = {"bits": 4}
    with pytest.raises(RecipeError, match="cannot train a 4-bit base: full fine-tuning updates every base weight"):
        validate(recipe)


@pytest.mark.parametrize("params", [{"config": "houlsby"}, {"config": "pfeiffer", "bottleneck_size": 4}])
def test_adapter_variants_conform(params, tmp_path):
    reports = check_method("adapters", tmp_path, params=params)
    assert all(not isinstance(r, str) for r in reports.values())


def test_bitfit_skips_llama_with_reason(tmp_path):
    with pytest.warns(UserWarning, match="no bias parameters"):
        reports = check_method("bitfit", tmp_path)
    assert isinstance(reports["llama"], str) and not isinstance(reports["bert"], str)


class _LeakyLora:
    """A broken third-party method: LoRA that also unfreezes every LayerNorm without declaring it."""

    def __init__(self):
        from peftkit.plugin.registry import get_registry

        self._lora = get_registry().methods["lora"]
        for attr in (
            "summary",
            "params_model",
            "default_lr",
            "can_merge",
            "quantized_bits",
            "save",
            "load",
            "merge",
            "facts",
        ):
            setattr(self, attr, getattr(self._lora, attr))
        self.name = "leaky"

    def apply(self, model, params, ctx):
        out = self._lora.apply(model, params, ctx)
        for n, p in out.named_parameters():
            if "LayerNorm" in n:
                p.requires_grad = True
        return out


def test_suite_catches_undeclared_trainable_base_parameters(tmp_path):
    with pytest.raises(ConformanceError, match="does not declare"):
        run_conformance(_LeakyLora(), tmp_path, model="bert")


class _HeadlessFull:
    """A broken method: full fine-tuning that forgets the classifier when saving."""

    def __init__(self):
        from peftkit.plugin.registry import get_registry

        full = get_registry().methods["full"]
        for attr in (
            "summary",
            "params_model",
            "default_lr",
            "can_merge",
            "quantized_bits",
            "apply",
            "merge",
            "facts",
            "trains_base_params",
        ):
            setattr(self, attr, getattr(full, attr))
        self.name = "headless"
        self._full = full

    def save(self, model, directory):
        from safetensors.torch import save_file

        directory.mkdir(parents=True)
        save_file(
            {n: p.detach().contiguous() for n, p in model.named_parameters() if "classifier" not in n},
            str(directory / "model.safetensors"),
        )

    def load(self, base, directory):
        from peftkit_plugins.full.method import load_safetensors_into

        load_safetensors_into(base, directory, strict=False)
        return base


def test_suite_catches_an_unsaved_head(tmp_path):
    with pytest.raises(ConformanceError, match="save → load changed the logits"):
        run_conformance(_HeadlessFull(), tmp_path, model="bert")
