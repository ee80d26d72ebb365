"""Resume after kill -9: inside a step, during evaluation, during a checkpoint write.

Each interrupted run is resumed with ``--resume``; the final adapter and metrics.json must be
bit-identical to an uninterrupted run (metrics.json minus wall-clock and memory measurements).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peftkit.kit.tiny import tiny_recipe

pytestmark = pytest.mark.integration  # several subprocess runs: ~1 min

FAULTS = """
import os, signal
import peftkit.train.checkpoint as ck
import peftkit.train.best as best
from peftkit import hookimpl

KIND, _, AT = os.environ.get("PEFTKIT_TEST_KILL", ":").partition(":")
AT = int(AT or 0)
_calls = {"eval": 0, "checkpoint": 0}


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def peftkit_on_step_end(state):
    if KIND == "step" and state.step == AT:
        _die()  # after optimizer.step, before zero_grad / any checkpoint of this step


_evaluate = best.evaluate


def _evaluate_then_die(model, data, *a, **k):
    _calls["eval"] += 1
    if KIND == "eval" and _calls["eval"] == AT:
        _die()
    return _evaluate(model, data, *a, **k)


best.evaluate = _evaluate_then_die
_rng_state = ck._rng_state


def _rng_state_then_die():
    _calls["checkpoint"] += 1
    if KIND == "checkpoint" and _calls["checkpoint"] == AT:
        _die()  # trainable.safetensors is written, trainer.pt is not: a half-written checkpoint
    return _rng_state()


ck._rng_state = _rng_state_then_die
"""

RUNTIME = ("seconds", "paused_seconds", "samples_per_second")


def _plugin_dir(root: Path) -> Path:
    pkg = root / "peftkit_faults"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAULTS)
    info = root / "peftkit_faults-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: peftkit_faults\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[peftkit]\nfaults = peftkit_faults\n")
    return root


def _run(recipe: Path, plugin_root: Path, *extra: str, kill: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(plugin_root), "PEFTKIT_TEST_KILL": kill}
    return subprocess.run(
        [sys.executable, "-m", "peftkit", "run", str(recipe), *extra], capture_output=True, text=True, env=env
    )


def _comparable(out: Path) -> tuple[bytes, dict]:
    m = json.loads((out / "metrics.json").read_text())
    for key in RUNTIME:
        m["train"].pop(key)
    m.pop("memory")
    m.pop("eval")  # wall-clock of the final evaluation
    return (out / "model" / "adapter_model.safetensors").read_bytes(), m


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bert, tiny_data):
    d = tmp_path_factory.mktemp("resume")
    plugin = _plugin_dir(d / "site")

    def recipe(name: str) -> Path:
        r = tiny_recipe(tiny_bert, tiny_data, d / name, epochs=3, batch_size=16, checkpoint_every=2, keep_checkpoints=2)
        path = d / f"{name}.yaml"
        path.write_text(yaml.safe_dump(r))
        return path

    ref = recipe("reference")
    done = _run(ref, plugin)
    assert done.returncode == 0, done.stderr[-3000:]
    return d, plugin, recipe, _comparable(d / "reference")


@pytest.mark.parametrize("kill", ["step:5", "eval:2", "checkpoint:3"])
def test_kill_then_resume_is_bit_identical(setup, kill):
    d, plugin, recipe, reference = setup
    name = "killed-" + kill.replace(":", "")
    path = recipe(name)
    first = _run(path, plugin, kill=kill)
    assert first.returncode == -9, first.stderr[-3000:]
    out = d / name
    assert not (out / "metrics.json").exists()
    again = _run(path, plugin)  # without --resume: refused, nothing touched
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    resumed = _run(path, plugin, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    weights, metrics = _comparable(out)
    assert weights == reference[0]
    assert metrics == reference[1]


def test_half_written_checkpoint_is_never_used(setup):
    d, plugin, recipe, _ = setup
    path = recipe("half")
    assert _run(path, plugin, kill="checkpoint:2").returncode == -9
    ckpts = sorted(p.name for p in (d / "half" / "checkpoints").iterdir())
    assert "step-00000002" in ckpts and "step-00000004" not in ckpts
    assert any(n.startswith(".tmp-step-00000004") for n in ckpts)
    from peftkit.train import checkpoint

    assert checkpoint.latest(d / "half").name == "step-00000002"
