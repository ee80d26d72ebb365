"""SIGTERM (what schedulers and `kill` send) and Ctrl-C stop a run at a step boundary: a checkpoint, the lock
released, the reason in train.log, exit 128 + signal; --resume then finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from peftkit.kit.tiny import tiny_recipe
from peftkit.run_dir import LOCK
from peftkit.train import checkpoint


def _start(path, log_file):
    return subprocess.Popen(
        [sys.executable, "-m", "peftkit", "run", str(path)], stdout=subprocess.PIPE, stderr=open(log_file, "w")
    )


def _wait_for(text, file, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if file.exists() and text in file.read_text():
            return
        assert proc.poll() is None, f"the run ended before {text!r} was logged"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {file}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_at_a_step_with_a_checkpoint_and_resume_finishes(tmp_path, tiny_bert, tiny_data, sig, code):
    out = tmp_path / "out"
    recipe = tiny_recipe(tiny_bert, tiny_data, out, max_steps=30, batch_size=2, log_every=1)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    console = tmp_path / "console.txt"
    proc = _start(path, console)
    _wait_for("step 2/30", out / "train.log", proc)
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=240) == code, console.read_text()[-3000:]
    name = sig.name
    log = (out / "train.log").read_text()
    assert f"{name} received: stopping after this step" in log
    stopped = int(log.split(f"stopped by {name} at step ")[1].split(";")[0])
    assert 2 <= stopped < 30
    last = checkpoint.latest(out)
    assert last is not None and last.name == f"step-{stopped:08d}"  # written at the step it stopped at
    assert json.loads((last / "state.json").read_text())["step"] == stopped
    assert not (out / LOCK).exists() and not (out / "metrics.json").exists()
    assert f"stopped by {name}" in console.read_text() or "interrupted" in console.read_text()
    assert "Traceback" not in console.read_text()
    if sig is signal.SIGINT:
        return  # resuming is the same for both; once is enough for the suite's time
    resumed = subprocess.run(
        [sys.executable, "-m", "peftkit", "run", str(path), "--resume"], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["train"]["steps"] == 30 and m["train"]["samples"] == 30 * 2
