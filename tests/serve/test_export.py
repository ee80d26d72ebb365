"""``peftkit export``: a transformers folder that ``pipeline`` loads and that answers like the run."""

from __future__ import annotations

import json

import pytest
import yaml

from peftkit.cli import main
from peftkit.errors import PeftkitError


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---", 2)[1])


@pytest.fixture(scope="module")
def exported(tiny_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "sentiment-a"
    assert main(["export", str(tiny_runs["a"]), "--out", str(out)]) == 0
    return out


def test_pipeline_loads_the_export_and_gives_the_runs_predictions(exported, tiny_runs, tiny_data):
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(exported), device="cpu")
    rows = [json.loads(x) for x in tiny_data["test"].read_text().splitlines()]
    predicted = [json.loads(x) for x in (tiny_runs["a"] / "test_predictions.jsonl").read_text().splitlines()]
    got = clf([r["text"] for r in rows], truncation=True)
    assert [g["label"] for g in got] == [p["label"] for p in predicted]  # what `peftkit predict` wrote


def test_export_config_card_and_files(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "peftkit_export.json"} <= names
    assert not any(n.startswith("adapter_") for n in names)  # merged: no peft files
    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "pos"} and cfg["label2id"] == {"neg": 0, "pos": 1}
    card = (exported / "README.md").read_text()
    fm = _front_matter(card)
    assert fm["library_name"] == "transformers" and fm["pipeline_tag"] == "text-classification"
    assert {"license", "tags"} <= set(fm) and "lora" in fm["tags"]
    assert "## Metrics" in card and "| dev | accuracy |" in card and "## Recipe" in card and "## Training" in card


def test_adapter_export_is_peft_format(tiny_runs, tmp_path):
    from peft import AutoPeftModelForSequenceClassification

    out = tmp_path / "adapter"
    assert main(["export", str(tiny_runs["b"]), "--out", str(out), "--adapter"]) == 0
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert _front_matter((out / "README.md").read_text())["library_name"] == "peft"
    card = (out / "README.md").read_text()
    assert "num_labels=2, id2label={0: 'neg', 1: 'pos'}" in card  # what the card tells users to pass
    model = AutoPeftModelForSequenceClassification.from_pretrained(
        str(out), num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}
    )
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.peft_config["default"].peft_type.value == "LORA"


def test_serving_adapter_exports_answers_in_the_tasks_labels(
    tiny_runs, tiny_bert, tiny_data, tmp_path, server_cls, own_probs, trainer
):
    """`export --adapter` folders served: a 2-label run answers neg/pos (not the base config's LABEL_0/1), a
    3-label one loads at all (its head is not the base config's 2 rows), each with its run's probabilities."""
    import httpx
    import numpy as np

    three = trainer(tiny_bert, tiny_data, tmp_path / "run-three", labels=["neg", "pos", "mid"])
    runs = {"two": tiny_runs["b"], "three": three}
    for name, run_dir in runs.items():
        assert main(["export", str(run_dir), "--out", str(tmp_path / name), "--adapter"]) == 0
    srv = server_cls([f"{n}={tmp_path / n}" for n in runs] + ["--threads", "1"], tmp_path / "log", timeout=300)
    try:
        srv.wait_ready()
        listed = {m["id"]: m["labels"] for m in httpx.get(srv.url + "/v1/models").json()["data"]}
        assert listed == {"two": ["neg", "pos"], "three": ["neg", "pos", "mid"]}
        texts = [json.loads(x)["text"] for x in tiny_data["test"].read_text().splitlines()][:6]
        for name, run_dir in runs.items():
            r = httpx.post(srv.url + "/v1/classify", json={"model": name, "input": texts}, timeout=30)
            assert r.status_code == 200, r.text
            got = np.array([d["probs"] for d in r.json()["data"]])
            np.testing.assert_allclose(got, own_probs(run_dir, texts), atol=1e-5)
            assert {d["label"] for d in r.json()["data"]} <= set(listed[name])
    finally:
        srv.stop()


def test_export_refuses_a_non_empty_folder_and_a_non_run(tiny_runs, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main(["export", str(tiny_runs["a"]), "--out", str(tmp_path / "x")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "x" / "keep.txt").is_file()
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "not a finished peftkit run" in capsys.readouterr().err


def test_quantize_with_adapter_is_refused(tiny_runs, tmp_path):
    from peftkit.serve.export import export_run

    with pytest.raises(PeftkitError, match="--quantize"):
        export_run(tiny_runs["a"], tmp_path / "q", adapter=True, quantize="int8")


@pytest.mark.integration
def test_int8_export_measures_both_variants_in_the_card(tiny_runs, tmp_path):
    out = tmp_path / "int8"
    assert main(["export", str(tiny_runs["a"]), "--out", str(out), "--quantize", "int8", "--eval-rows", "48"]) == 0
    meta = json.loads((out / "peftkit_export.json").read_text())
    q = meta["quantize_report"]
    assert meta["quantize"] == "int8" and q["rows"] == 48
    assert 0 <= q["int8"]["agreement"] <= 1 and q["float32"]["agreement"] == 1.0
    assert q["int8"]["samples_per_second"] > 0
    assert "dynamic int8" in (out / "README.md").read_text()
