"""``model.source: run:<folder>``: a finished masked-LM run becomes the next recipe's base (pretrain → fine-tune),
built once into the cache, keyed by the run's content, and checked by ``peftkit validate``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from peftkit.errors import ModelSourceError, RecipeError


@pytest.fixture(scope="module")
def mlm_run(tiny_bert, tmp_path_factory) -> Path:
    """A finished LoRA masked-LM run on the tiny BERT."""
    from peftkit.kit.tiny import sentiment_rows
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    root = tmp_path_factory.mktemp("pretrain")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(r["text"] + "\n" for r in sentiment_rows(80, 9)))
    out = root / "mlm-news"
    recipe = {
        "model": {"source": f"local:{tiny_bert}"},
        "method": {"name": "lora"},
        "task": {"name": "mlm", "params": {"train_file": str(corpus)}},
        "data": {"max_length": 32},
        "train": {"epochs": 1, "batch_size": 8, "lr": 2e-2, "seed": 0},
        "output_dir": str(out),
    }
    run(validate(recipe))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PEFTKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _source():
    from peftkit.plugin.registry import get_registry

    return get_registry().sources["run"]


def test_the_next_run_starts_from_the_merged_weights(mlm_run, tiny_data, cache, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from peftkit import load_run
    from peftkit.build.model import load_model
    from peftkit.build.setup import prepare
    from peftkit.kit.tiny import tiny_recipe
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import validate

    folder = _source().resolve(str(mlm_run))
    assert folder.parent == cache / "models" and (folder / "model.safetensors").is_file()
    setup, trained = load_run(mlm_run)
    merged = setup.method.merge(trained).state_dict()
    exported = AutoModelForMaskedLM.from_pretrained(str(folder)).state_dict()
    assert merged.keys() == exported.keys() and all(torch.equal(merged[k], exported[k]) for k in merged)
    lora_moved = setup.method.merge(load_run(mlm_run)[1])  # the adapter changed the base: not a no-op export
    base = AutoModelForMaskedLM.from_pretrained(str(setup.model_path)).state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(base[key], lora_moved.state_dict()[key])

    data = tiny_recipe(folder, tiny_data, tmp_path / "cls")  # the fine-tuning recipe: text classification
    data["model"]["source"] = f"run:{mlm_run}"
    recipe = validate(data)
    s = prepare(recipe, get_registry(), splits=())
    assert s.model_path == folder  # reused, not rebuilt
    start, _ = load_model(s.model_path, recipe.model, s.labels, s.tokenizer, head=s.objective)
    weights = start.state_dict()
    encoder = [k for k in merged if k.startswith("bert.")]  # the classifier (and BERT's pooler) are new
    assert len(encoder) > 30 and all(torch.equal(weights[k], merged[k]) for k in encoder)
    assert s.tokenizer("the movie")["input_ids"] == setup.tokenizer("the movie")["input_ids"]


def test_the_folder_is_built_once_and_rebuilt_when_the_run_changes(mlm_run, cache, tmp_path):
    first = _source().resolve(str(mlm_run))
    created = json.loads((first / ".peftkit-complete.json").read_text())["created"]
    assert _source().resolve(str(mlm_run)) == first
    assert json.loads((first / ".peftkit-complete.json").read_text())["created"] == created
    other = tmp_path / "mlm-news"
    shutil.copytree(mlm_run, other)
    (other / "recipe.yaml").write_text((other / "recipe.yaml").read_text() + "\n# retrained\n")
    second = _source().resolve(str(other))
    assert second != first and second.name.startswith("run-mlm-news-")


def test_validate_checks_the_run_exists_and_finished(mlm_run, tiny_data, tmp_path):
    from peftkit.kit.tiny import tiny_recipe
    from peftkit.recipe import validate

    data = tiny_recipe(mlm_run, tiny_data, tmp_path / "cls")
    data["model"]["source"] = f"run:{tmp_path / 'nowhere'}"
    with pytest.raises(RecipeError, match=r"model.source: run folder '.*nowhere' does not exist"):
        validate(data)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(mlm_run, unfinished)
    (unfinished / "metrics.json").unlink()
    data["model"]["source"] = f"run:{unfinished}"
    with pytest.raises(RecipeError, match=r"run '.*unfinished' has not finished \(no metrics.json\)"):
        validate(data)
    with pytest.raises(ModelSourceError, match="has not finished"):
        _source().resolve(str(unfinished))
    data["model"]["source"] = f"run:{tmp_path}"
    with pytest.raises(RecipeError, match="is not a peftkit run folder .it has no recipe.yaml and no model."):
        validate(data)


@pytest.mark.integration
def test_pretrain_then_fine_tune_on_real_data(tmp_path, monkeypatch):
    """Masked-LM LoRA on multilingual-e5-small over FewCLUE TNEWS's unlabelled headlines, then FewCLUE TNEWS
    fine-tuned from the result through run: (a few steps each: the pipeline, not the numbers)."""
    import torch

    from peftkit import load_run
    from peftkit.build.model import load_model
    from peftkit.build.setup import prepare
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import load_recipe
    from peftkit.train.loop import run

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clue" / "fewclue" / "tnews"
    if not (data / "unlabeled.json").is_file():
        pytest.skip(f"FewCLUE TNEWS is not at {data}")
    monkeypatch.setenv("PEFTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PEFTKIT_CLUE_DIR", str(data.parents[1]))
    root = Path(__file__).resolve().parents[2] / "recipes"
    pre = tmp_path / "mlm"
    recipe = load_recipe(
        root / "mlm" / "fewclue-tnews_e5-small_lora.yaml",
        [
            f"task.params.train_file={data / 'unlabeled.json'}",
            "task.params.max_train_samples=300",
            "train.max_steps=6",
            f"output_dir={pre}",
        ],
    )
    first = run(recipe)
    assert first["final"]["masked_tokens"] > 50 and first["final"]["perplexity"] > 1
    tune = load_recipe(
        root / "clue" / "fewclue" / "tnews" / "e5-small_lora.yaml",
        [
            f"model.source=run:{pre}",
            "train.max_steps=4",
            "eval.predict=false",
            "task.params.max_dev_samples=64",
            f"output_dir={tmp_path / 'tnews'}",
        ],
    )
    s = prepare(tune, get_registry(), splits=())
    setup, trained = load_run(pre)
    merged = setup.method.merge(trained).state_dict()
    start = load_model(s.model_path, tune.model, s.labels, s.tokenizer, head=s.objective)[0].state_dict()
    key = "bert.encoder.layer.3.attention.self.query.weight"
    assert torch.equal(start[key], merged[key])
    second = run(tune)
    assert 0 <= second["final"]["accuracy"] <= 1
