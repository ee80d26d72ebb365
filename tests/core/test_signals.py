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
from peftkit.run_dir import LOCK, holder
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


def test_sigterm_to_a_compare_stops_the_cell_it_is_running(tmp_path, tiny_bert, tiny_data):
    """`kill <compare pid>` reaches only the compare; it passes SIGTERM on to its cell's run and waits for it, so
    no orphan trains on holding the cell's lock (a compare started again found the cell 'being written by
    another peftkit run' and counted it failed)."""
    base = tiny_recipe(tiny_bert, tiny_data, tmp_path / "unused", max_steps=400, batch_size=2, log_every=1)
    task, method = base.pop("task"), base.pop("method")
    del base["output_dir"]
    grid = {"output_dir": str(tmp_path / "grid"), "executor": "subprocess", "seeds": [0], "base": base}
    grid.update(tasks=[{"name": task["name"], "params": task["params"]}], methods=[{"name": method["name"]}])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    console = tmp_path / "console.txt"
    cmd = [sys.executable, "-m", "peftkit", "compare", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(console, "w"))
    cell = tmp_path / "grid" / "text-classification" / "lora" / "seed0"
    _wait_for("step 2/400", cell / "train.log", proc)
    running = holder(cell)
    assert running is not None, "the cell's run holds no lock while it trains"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, console.read_text()[-3000:]
    with pytest.raises(ProcessLookupError):  # the cell's run ended before the compare did
        os.kill(int(running["pid"]), 0)
    assert holder(cell) is None and "stopped by SIGTERM at step" in (cell / "train.log").read_text()
    assert "compare stopped (stopped by SIGTERM)" in (tmp_path / "grid" / "compare.log").read_text()
    assert "Traceback" not in console.read_text()
