"""Experiment trackers: real MLflow (SQLite store) and W&B (offline) records, read back with their own readers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import peftkit
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import validate

pytest.importorskip("mlflow")
pytest.importorskip("wandb")


def _run(tiny_bert, tiny_data, out, plugins_config, **train):
    recipe = tiny_recipe(tiny_bert, tiny_data, out, epochs=1, **train)
    recipe["plugins_config"] = plugins_config
    return peftkit.run(validate(recipe))


def test_mlflow_records_params_metrics_and_the_run_folder(tiny_bert, tiny_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = _run(tiny_bert, tiny_data, tmp_path / "out", {"mlflow": {"tracking_uri": uri, "experiment": "e1"}})
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e1").experiment_id])
    assert run.info.run_name == "out" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.02" and run.data.params["method.name"] == "lora"
    assert run.data.metrics["final/accuracy"] == pytest.approx(result["final"]["accuracy"])
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == list(range(2, result["total_steps"] + 1, 2))  # every train.log_every=2 steps
    assert len(client.get_metric_history(run.info.run_id, "eval/accuracy")) == len(result["history"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "recipe.yaml", "train.log", "model"} <= artifacts


def test_wandb_offline_run_is_read_back_by_wandb_itself(tiny_bert, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PEFTKIT_EXPERIMENT", "grid-x")  # what peftkit compare sets for its cells
    monkeypatch.setenv("PEFTKIT_RUN_NAME", "tnews/lora/seed0")
    result = _run(tiny_bert, tiny_data, tmp_path / "out", {"wandb": {}})
    wandb_cli = shutil.which("wandb", path=os.path.dirname(sys.executable)) or "wandb"
    proc = subprocess.run(
        [wandb_cli, "leet", "inspect", "--summary", "--json", str(tmp_path / "wandb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    text = json.dumps(summary)
    assert "grid-x" in text and "tnews/lora/seed0" in text
    assert "final/accuracy" in text and str(result["final"]["accuracy"]) in text


def test_no_plugins_config_section_means_no_tracking(tiny_bert, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    peftkit.run(validate(tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=1)))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "wandb").exists()


def test_a_bad_setting_is_a_recipe_error_naming_the_key(tiny_bert, tiny_data, tmp_path):
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out")
    recipe["plugins_config"] = {"wandb": {"mode": "sometimes"}}
    with pytest.raises(peftkit.RecipeError, match=r"plugins_config\.wandb\.mode"):
        validate(recipe)
