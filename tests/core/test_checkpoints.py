"""Checkpoints can never be half-picked: a marker written last, an atomic replace, damaged ones skipped.
And what --resume checks before it continues a run (the recipe, the folder, the time of earlier legs)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch

from peftkit.errors import PeftkitError
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import validate
from peftkit.train import checkpoint
from peftkit.train.loop import run

ADAPTER = "model/adapter_model.safetensors"


def _recipe(tiny_bert, tiny_data, out, **over):
    kw = {"max_steps": 8, "batch_size": 16, "checkpoint_every": 2, "keep_checkpoints": 10, **over}
    return validate(tiny_recipe(tiny_bert, tiny_data, out, **kw))


@pytest.fixture(scope="module")
def full(tmp_path_factory, tiny_bert, tiny_data):
    """An uninterrupted run with checkpoints at steps 2, 4, 6 (an epoch end, 96 rows / 16) and 8."""
    out = tmp_path_factory.mktemp("ckpt") / "full"
    return out, run(_recipe(tiny_bert, tiny_data, out))


def _copy(full_out, dest):
    shutil.copytree(full_out, dest)
    return dest


def test_every_checkpoint_is_marked_complete(full):
    out, _ = full
    names = [p.name for p in checkpoint.complete(out / "checkpoints")]
    assert names == [f"step-0000000{i}" for i in (2, 4, 6, 8)]
    marker = json.loads((out / "checkpoints" / "step-00000002" / checkpoint.MARKER).read_text())
    assert set(marker["files"]) == {"trainable.safetensors", "trainer.pt", "state.json"}


def test_a_checkpoint_killed_in_the_replace_window_is_skipped_and_resume_works(full, tmp_path, caplog):
    """What the old replace left after a kill between deleting step-N and renaming the new one in: step-N
    without trainable.safetensors. latest() must skip it (with a warning) and --resume go on from the one before,
    ending byte-identical to the uninterrupted run."""
    out, ref = full
    damaged = _copy(out, tmp_path / "damaged")
    for late in ("step-00000008",):
        shutil.rmtree(damaged / "checkpoints" / late)
    (damaged / "checkpoints" / "step-00000006" / "trainable.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="peftkit"):
        assert checkpoint.latest(damaged).name == "step-00000004"
    assert "step-00000006 is not usable and is skipped: trainable.safetensors is missing" in caplog.text
    (damaged / "metrics.json").unlink()
    resumed = run(validate(_resolved(damaged)), resume=True)
    assert resumed["train"]["loss"] == ref["train"]["loss"] and resumed["final"] == ref["final"]
    assert (damaged / ADAPTER).read_bytes() == (out / ADAPTER).read_bytes()


def _resolved(folder):
    """The resolved recipe a run folder holds, pointed at that folder (a copied folder names its original)."""
    import yaml

    return {**yaml.safe_load((folder / "recipe.yaml").read_text()), "output_dir": str(folder)}


def test_a_checkpoint_without_its_marker_or_with_a_short_file_is_skipped(full, tmp_path):
    damaged = _copy(out := full[0], tmp_path / "d")
    (damaged / "checkpoints" / "step-00000008" / checkpoint.MARKER).unlink()
    weights = damaged / "checkpoints" / "step-00000006" / "trainer.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated copy
    assert checkpoint.problem(damaged / "checkpoints" / "step-00000008").startswith("it has no complete.json")
    assert "trainer.pt has 100 bytes" in checkpoint.problem(damaged / "checkpoints" / "step-00000006")
    assert checkpoint.latest(damaged).name == "step-00000004"
    assert checkpoint.latest(out).name == "step-00000008"


def test_replacing_a_step_keeps_one_complete_checkpoint_at_every_moment(tmp_path):
    """The epoch-end checkpoint of a step already saved replaces it: the old one is renamed aside first, and a
    kill between the two renames leaves it to be restored, never a folder without its files."""
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    meta = {"step": 6, "epoch": 0, "batch_index": 6}
    first = checkpoint.save(tmp_path, model, opt, sched, meta, keep=3)
    second = checkpoint.save(tmp_path, model, opt, sched, {**meta, "epoch": 1, "batch_index": 0}, keep=3)
    assert first == second and json.loads((second / "state.json").read_text())["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000006"]
    # a kill right after the old one was renamed aside, before the new one came in:
    aside = tmp_path / "checkpoints" / f"{checkpoint.OLD}step-00000006-{os.getpid()}"
    os.replace(second, aside)
    assert checkpoint.latest(tmp_path).name == "step-00000006"  # restored
    assert json.loads((second / "state.json").read_text())["epoch"] == 1 and not aside.exists()


def test_resume_refusing_a_changed_recipe_names_the_keys(full, tiny_bert, tiny_data):
    out, _ = full
    changed = _recipe(tiny_bert, tiny_data, out, lr=1e-2, batch_size=8)
    with pytest.raises(PeftkitError) as err:
        run(changed, resume=True)
    msg = str(err.value)
    assert "the recipe differs from the one that started" in msg
    assert "train.batch_size: 16 -> 8" in msg and "train.lr: 0.02 -> 0.01" in msg
    assert f"peftkit run {out / 'recipe.yaml'} --resume" in msg


def test_resume_into_a_missing_folder_does_not_create_it(tmp_path, tiny_bert, tiny_data):
    missing = tmp_path / "never" / "ran"
    with pytest.raises(PeftkitError, match=r"does not exist, so there is no run to resume; run without --resume"):
        run(_recipe(tiny_bert, tiny_data, missing), resume=True)
    assert not missing.exists() and not missing.parent.exists()


def test_the_advice_for_a_taken_folder_names_a_folder_that_is_free(full, tiny_bert, tiny_data, tmp_path):
    out, _ = full
    taken = _copy(out, tmp_path / "run")
    (tmp_path / "run-2").mkdir()  # the obvious suggestion is taken too
    with pytest.raises(PeftkitError, match=r"pass --resume to continue it, .*output_dir=\S*run-3\)"):
        run(_recipe(tiny_bert, tiny_data, taken))
    shutil.rmtree(taken / "checkpoints")  # nothing to resume: --resume must not be suggested, nor a bare rerun
    with pytest.raises(PeftkitError) as err:
        run(_recipe(tiny_bert, tiny_data, taken))
    assert "--resume" not in str(err.value) and "run-3" in str(err.value)
    with pytest.raises(PeftkitError) as err:
        run(_recipe(tiny_bert, tiny_data, taken), resume=True)
    assert "no complete checkpoint" in str(err.value) and "--overwrite" in str(err.value)
    assert "run without --resume into another output_dir (e.g. output_dir=" in str(err.value)


def test_train_seconds_count_every_leg_of_a_resumed_run(full, tmp_path):
    out, ref = full
    resumed_dir = _copy(out, tmp_path / "legs")
    shutil.rmtree(resumed_dir / "checkpoints" / "step-00000008")
    (resumed_dir / "metrics.json").unlink()
    before = json.loads((resumed_dir / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert before["train_seconds"] > 0
    resumed = run(validate(_resolved(resumed_dir)), resume=True)
    t = resumed["train"]
    assert t["seconds"] > before["train_seconds"]  # the earlier leg's time is in, not only the 2 resumed steps
    assert t["samples"] == ref["train"]["samples"]
    # metrics.json rounds seconds and the rate to 3 decimals: they must agree to that rounding (a rate off by 5e-4
    # moves samples / rate by samples * 5e-4 / rate**2, which a slow, loaded machine makes larger than 1 ms)
    rate = t["samples_per_second"]
    assert abs(t["samples"] / rate - t["seconds"]) <= 5e-4 + t["samples"] * 5e-4 / rate**2 + 1e-9


def test_an_error_before_logging_starts_is_printed_once(full, capsys, monkeypatch):
    from peftkit.cli import main

    out, _ = full
    monkeypatch.setattr(logging.getLogger("peftkit"), "handlers", [])  # a fresh process: no handler yet
    import yaml

    path = out.parent / "again.yaml"
    path.write_text(yaml.safe_dump(_resolved(out)))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("already holds a run") == 1, err
