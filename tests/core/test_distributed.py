"""Data-parallel training with 2 CPU processes (gloo) matches 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from peftkit.kit.tiny import make_tiny_bert, tiny_recipe

pytestmark = pytest.mark.integration  # two process groups: ~30 s


def test_two_processes_match_one(tmp_path, tiny_data):
    bert = make_tiny_bert(tmp_path / "bert", dropout=0.0)  # dropout masks differ per process otherwise
    paths = {}
    for name, bs in (("one", 16), ("two", 8)):
        r = tiny_recipe(bert, tiny_data, tmp_path / name, method_params={"dropout": 0.0}, batch_size=bs, max_steps=6)
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(r))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, extra in (("one", []), ("two", ["--num-processes", "2"])):
        res = subprocess.run(
            [sys.executable, "-m", "peftkit", "run", str(paths[name]), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["processes"] == 1 and two["processes"] == 2
    assert one["train"]["samples"] == two["train"]["samples"] == 6 * 16
    assert two["train"]["loss"] == pytest.approx(one["train"]["loss"], abs=1e-4)
    for key in ("eval_loss", "accuracy"):
        assert two["final"][key] == pytest.approx(one["final"][key], abs=1e-4)
    # only rank 0 writes: one event file, one "done" line in the log
    assert len(list((tmp_path / "two" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (tmp_path / "two" / "train.log").read_text().count(" done: ") == 1
