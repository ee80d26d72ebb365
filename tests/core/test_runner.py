"""End-to-end runs on a tiny BERT: outputs, exact reload, head saved, schedules, accumulation."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml

from peftkit import hookimpl
from peftkit.cli import main
from peftkit.errors import PeftkitError
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import validate
from peftkit.train.loop import run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert, tiny_data):
    d = tmp_path_factory.mktemp("e2e")
    recipe = tiny_recipe(tiny_bert, tiny_data, d / "out", epochs=3, batch_size=16)
    recipe["eval"] = {"predict": True}
    path = d / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path)]) == 0
    return d / "out"


def test_outputs_exist(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"recipe.yaml", "metrics.json", "model", "train.log", "tensorboard", "test_predictions.jsonl"} <= names
    model = {p.name for p in (finished_run / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= model
    assert list((finished_run / "tensorboard").glob("events.out.tfevents.*"))
    log = (finished_run / "train.log").read_text()
    assert "parameters trainable" in log and "eval step" in log
    assert " INFO model local:" in log  # the base model's folder, for reloading the adapter with plain peft


def test_metrics_json_contents(finished_run):
    m = json.loads((finished_run / "metrics.json").read_text())
    assert [h["step"] for h in m["history"]] == [6, 12, 18]  # 96 rows / 16 = 6 steps per epoch
    assert m["best"]["accuracy"] == max(h["accuracy"] for h in m["history"])
    assert m["final"]["accuracy"] == pytest.approx(m["best"]["accuracy"], abs=0)
    assert m["eval"]["merged"] is True  # final evaluation ran on the adapter merged into a fresh base
    assert m["best"]["accuracy"] > 0.6  # the synthetic task is learnable; 0.5 = chance
    p = m["params"]
    assert 0 < p["trainable"] < p["total"] and p["percent"] == round(100 * p["trainable"] / p["total"], 4)
    assert m["memory"]["peak_bytes"] > 0 and m["train"]["samples"] == 3 * 96
    assert "test" not in m  # the test file has no labels: predictions only


def test_a_labelled_test_file_is_scored_once_at_the_end(tmp_path, tiny_bert, tiny_data):
    """eval.predict on a test file with labels: metrics.json `test` holds the task's metrics on it."""
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=1, batch_size=16)
    recipe["task"]["params"]["test_file"] = str(tiny_data["dev"])  # labelled, with ids: dev doubles as a test set here
    recipe["eval"] = {"predict": True}
    m = run(validate(recipe))
    assert set(m["test"]) == set(m["final"])
    assert m["test"]["accuracy"] == m["final"]["accuracy"]  # same rows, same saved model
    assert m["test"]["eval_loss"] == pytest.approx(m["final"]["eval_loss"], rel=1e-6)
    assert "test (48 labelled rows): accuracy=" in (tmp_path / "out" / "train.log").read_text()


def test_a_partly_labelled_test_file_is_not_scored(tmp_path, tiny_bert, tiny_data):
    rows = [json.loads(x) for x in tiny_data["dev"].read_text().splitlines()]
    for r in rows[::2]:
        del r["label"]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=1, batch_size=16)
    recipe["task"]["params"]["test_file"] = str(mixed)
    recipe["eval"] = {"predict": True}
    m = run(validate(recipe))
    assert "test" not in m and m["predictions"].endswith("test_predictions.jsonl")
    log = (tmp_path / "out" / "train.log").read_text()
    assert "test split: 24 of 48 rows have a label; test metrics need every row labelled" in log


def test_final_evaluation_unmerged_on_request(tmp_path, tiny_bert, tiny_data):
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=1, batch_size=16)
    recipe["eval"] = {"merged": False}
    m = run(validate(recipe))
    assert m["eval"]["merged"] is False and m["final"]["accuracy"] == m["best"]["accuracy"]


def test_bf16_mixed_precision_on_cpu_also_evaluates_in_bf16(tmp_path, tiny_bert, tiny_data):
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=1, batch_size=16)
    recipe["train"]["mixed_precision"] = "bf16"
    m = run(validate(recipe))
    assert m["eval"]["mixed_precision"] == "bf16" and m["final"]["accuracy"] == pytest.approx(
        m["best"]["accuracy"], abs=0.06
    )


def test_reload_with_peft_reproduces_accuracy_exactly(finished_run, tiny_bert, tiny_data):
    """The adapter must carry the classifier: reloading it in plain peft gives the same dev accuracy."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    m = json.loads((finished_run / "metrics.json").read_text())
    torch.manual_seed(1234)  # a different seed: a classifier missing from the adapter would be re-randomised
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    model = PeftModel.from_pretrained(base, str(finished_run / "model")).eval()
    tok = AutoTokenizer.from_pretrained(str(finished_run / "model"))
    rows = [json.loads(line) for line in tiny_data["dev"].read_text().splitlines()]
    enc = tok([r["text"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        preds = model(**enc).logits.argmax(-1).numpy()
    gold = np.array([["neg", "pos"].index(r["label"]) for r in rows])
    assert float((preds == gold).mean()) == m["best"]["accuracy"]
    from safetensors import safe_open

    with safe_open(str(finished_run / "model" / "adapter_model.safetensors"), "pt") as f:
        assert any("classifier" in k for k in f.keys())


def test_predictions_file(finished_run, tiny_data):
    lines = [json.loads(x) for x in (finished_run / "test_predictions.jsonl").read_text().splitlines()]
    ids = [json.loads(x)["id"] for x in tiny_data["test"].read_text().splitlines()]
    assert [r["id"] for r in lines] == ids and {r["label"] for r in lines} <= {"neg", "pos"}


def test_predict_command_reads_moved_data_and_reproduces_the_run(finished_run, tiny_data, tmp_path, capsys):
    """`peftkit predict RUN_DIR task.params.test_file=...`: the data moved; the predictions are the run's own."""
    import shutil

    moved = tmp_path / "moved-test.jsonl"
    shutil.copy(tiny_data["test"], moved)
    before = (finished_run / "test_predictions.jsonl").read_text()
    (finished_run / "test_predictions.jsonl").unlink()
    assert main(["predict", str(finished_run), f"task.params.test_file={moved}", "eval.batch_size=4"]) == 0
    assert (finished_run / "test_predictions.jsonl").read_text() == before
    err = capsys.readouterr().err
    assert "predicting text-classification test split on cpu" in err and "wrote 16 predictions" in err


def test_predict_refuses_to_change_the_model(finished_run, capsys):
    assert main(["predict", str(finished_run), "method.params.r=4"]) == 2
    assert "method.params.r=4: a finished run can only change task.params.*" in capsys.readouterr().err


def test_predict_finds_missing_test_data_before_loading_the_model(finished_run, tmp_path, capsys, monkeypatch):
    import peftkit.evaluation.runs

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(peftkit.evaluation.runs, "build_model", no_model)
    assert main(["predict", str(finished_run), f"task.params.test_file={tmp_path / 'gone.jsonl'}"]) == 2
    assert "gone.jsonl" in capsys.readouterr().err


def test_resolved_recipe_reruns(finished_run):
    resolved = yaml.safe_load((finished_run / "recipe.yaml").read_text())
    assert resolved["method"]["params"]["r"] == 8 and resolved["train"]["scheduler"] == "linear"
    validate(resolved)


def test_existing_output_dir_is_refused(finished_run, tiny_bert, tiny_data):
    recipe = validate(tiny_recipe(tiny_bert, tiny_data, finished_run))
    before = (finished_run / "metrics.json").read_bytes()
    with pytest.raises(PeftkitError, match="already holds a run .* --overwrite"):
        run(recipe)
    assert (finished_run / "metrics.json").read_bytes() == before


def test_same_seed_same_result(tmp_path, tiny_bert, tiny_data):
    a = run(validate(tiny_recipe(tiny_bert, tiny_data, tmp_path / "a", max_steps=5)))
    b = run(validate(tiny_recipe(tiny_bert, tiny_data, tmp_path / "b", max_steps=5)))
    assert a["history"] == b["history"]
    fa = (tmp_path / "a" / "model" / "adapter_model.safetensors").read_bytes()
    assert fa == (tmp_path / "b" / "model" / "adapter_model.safetensors").read_bytes()


def _trained_weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "adapter_model.safetensors"))


def test_grad_accumulation_matches_bigger_batch(tmp_path, tiny_data):
    from peftkit.kit.tiny import make_tiny_bert

    tiny_bert = make_tiny_bert(tmp_path / "bert", dropout=0.0)  # dropout masks would differ between batch shapes
    params = {"dropout": 0.0}
    r1 = tiny_recipe(tiny_bert, tiny_data, tmp_path / "big", method_params=params, batch_size=16, max_steps=3)
    r2 = tiny_recipe(
        tiny_bert, tiny_data, tmp_path / "acc", method_params=params, batch_size=8, grad_accum=2, max_steps=3
    )
    for r in (r1, r2):
        r["data"]["group_by_length"] = False
        r["eval"] = {"every": 3}
    run(validate(r1)), run(validate(r2))
    w1, w2 = _trained_weights(tmp_path / "big"), _trained_weights(tmp_path / "acc")
    # same examples per optimizer step → same update, up to float summation order
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5), k


class _GradProbe:
    """Keeps the gradients of every optimizer step (the step hook runs before they are zeroed)."""

    def __init__(self):
        self.grads = []

    @hookimpl
    def peftkit_on_step_end(self, state):
        self.grads.append({n: p.grad.clone() for n, p in state.model.named_parameters() if p.requires_grad})


def test_a_short_last_accumulation_window_averages_over_its_own_batches(tmp_path, tiny_data):
    """96 rows in batches of 16 are 6 batches: grad_accum=4 makes windows of 4 and 2. The second step's gradient
    must be the mean over its 2 batches, which is what grad_accum=2's third step sees for the same 2 batches
    (a divisor of 4 would halve it). lr ~0 keeps the weights, and so the gradients, comparable."""
    from peftkit.kit.tiny import make_tiny_bert
    from peftkit.plugin.registry import build_registry

    bert = make_tiny_bert(tmp_path / "bert", dropout=0.0)
    grads = {}
    for accum in (4, 2):
        probe = _GradProbe()
        reg = build_registry(extra_plugins={"probe": probe})
        recipe = tiny_recipe(
            bert, tiny_data, tmp_path / f"acc{accum}", method_params={"dropout": 0.0}, batch_size=16, epochs=1,
            grad_accum=accum, lr=1e-12, max_grad_norm=None,
        )  # fmt: skip
        recipe["data"]["group_by_length"] = False
        m = run(validate(recipe, registry=reg), registry=reg)
        assert m["train"]["steps"] == {4: 2, 2: 3}[accum] and m["train"]["samples"] == 96
        grads[accum] = probe.grads[-1]
    for name, g in grads[4].items():
        assert torch.allclose(g, grads[2][name], rtol=1e-4, atol=1e-9), name
    assert any(g.abs().max() > 1e-6 for g in grads[4].values())  # the comparison is not between zeros


def test_warmup_and_cosine_schedule(tmp_path, tiny_bert, tiny_data):
    from peftkit.train.parts import make_optimizer as _optimizer
    from peftkit.train.parts import make_scheduler as _scheduler

    r = validate(tiny_recipe(tiny_bert, tiny_data, tmp_path, warmup=2, scheduler="cosine", lr=1.0))
    opt = _optimizer(torch.nn.Linear(2, 2), r, 1.0)
    sched = _scheduler(opt, r, 10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:3] == [0.0, 0.5, 1.0] and lrs[3] < 1.0 and lrs[-1] < 0.05


def test_no_decay_for_bias_and_layernorm(tmp_path, tiny_bert, tiny_data):
    from peftkit.train.parts import make_optimizer as _optimizer

    r = validate(tiny_recipe(tiny_bert, tiny_data, tmp_path))
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    groups = _optimizer(net, r, 1e-3).param_groups
    assert [len(g["params"]) for g in groups] == [1, 3] and groups[1]["weight_decay"] == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is about CPUs; a GPU runs bf16 natively")
def test_bf16_on_a_cpu_without_native_bf16_warns(tmp_path, tiny_bert, tiny_data, monkeypatch, caplog):
    import peftkit.build.model
    from peftkit.train.parts import make_accelerator as _accelerator

    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out")
    recipe["train"]["mixed_precision"] = "bf16"
    monkeypatch.setattr(peftkit.build.model, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="peftkit"):
        _accelerator(validate(recipe))
    assert (
        "train.mixed_precision=bf16: this CPU has no AVX512-BF16" in caplog.text
        and "train.mixed_precision: no" in caplog.text
    )
    caplog.clear()
    monkeypatch.setattr(peftkit.build.model, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="peftkit"):
        _accelerator(validate(recipe))
    assert "AVX512-BF16" not in caplog.text


@pytest.mark.integration  # inductor compiles C++ for ~40 s on 2 cores
def test_compile_trains_like_eager_and_saves_plain_weights(tmp_path, tiny_data):
    """train.compile: the training forward runs through inductor; without dropout it computes what eager
    does (up to fused-kernel rounding), and the saved adapter has the same keys as an eager run's."""
    from safetensors import safe_open
    from torch._dynamo.utils import counters

    from peftkit.kit.tiny import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert", dropout=0.0)  # inductor draws dropout masks from its own RNG
    results = {}
    for compiled in (False, True):
        out = tmp_path / f"out-{compiled}"
        recipe = tiny_recipe(bert, tiny_data, out, method_params={"dropout": 0.0}, epochs=2, batch_size=16)
        recipe["train"]["compile"] = compiled
        counters.clear()
        m = run(validate(recipe))
        with safe_open(str(out / "model" / "adapter_model.safetensors"), "pt") as f:
            results[compiled] = (m, sorted(f.keys()), counters["stats"]["unique_graphs"])
    (eager, eager_keys, eager_graphs), (comp, comp_keys, comp_graphs) = results[False], results[True]
    assert eager_graphs == 0 and comp_graphs > 0
    assert comp_keys == eager_keys and not any("_orig_mod" in k for k in comp_keys)
    assert comp["train"]["loss"] == pytest.approx(eager["train"]["loss"], abs=1e-3)
    assert comp["final"]["accuracy"] == pytest.approx(eager["final"]["accuracy"], abs=0.02)


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path, tiny_bert, tiny_data):
    import subprocess
    import sys

    from peftkit import run_dir

    out = tmp_path / "out"
    holder = subprocess.Popen(  # a live process holding the lock, as a run does
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from peftkit.run_dir import run_lock\n"
            f"with run_lock(pathlib.Path({str(out)!r})):\n    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    recipe = validate(tiny_recipe(tiny_bert, tiny_data, out, max_steps=1))
    with pytest.raises(PeftkitError, match=rf"is being written by another peftkit run \(pid {holder.pid} on "):
        run(recipe)
    holder.kill()  # killed while holding it: its lock file stays, but the kernel released the flock
    holder.wait()
    assert (out / run_dir.LOCK).exists()
    run(recipe)  # a stale lock is taken over
    assert (out / "metrics.json").is_file() and not (out / run_dir.LOCK).exists()  # and released at the end


def test_a_run_stops_when_the_parent_process_it_watches_is_gone(tmp_path, tiny_bert, tiny_data):
    """PEFTKIT_PARENT_PID names the run's parent (as `peftkit compare` sets it for its cells); the parent exits while
    the run trains: the run stops instead of training on as an orphan."""
    import subprocess
    import sys
    import time

    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", max_steps=200, batch_size=2)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    console = tmp_path / "console.txt"
    parent = (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'peftkit', 'run', {str(path)!r}], "
        f"stdout=open({str(console)!r}, 'w'), stderr=subprocess.STDOUT, "
        "env={**os.environ, 'PEFTKIT_PARENT_PID': str(os.getpid())})\n"
        "print(p.pid, flush=True)\n"
        f"while 'step 2/' not in open({str(tmp_path / 'out' / 'train.log')!r}).read() if os.path.exists("
        f"{str(tmp_path / 'out' / 'train.log')!r}) else True: time.sleep(0.2)\n"
        "os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=300)
    child = int(proc.stdout.split()[0])
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    log = (tmp_path / "out" / "train.log").read_text()
    assert (
        "ERROR run stopped: the process that started this run (pid" in log
        and "from PEFTKIT_PARENT_PID) is gone; stopping at step" in log
    ), log[-2000:]
    assert console.read_text().count("that started this run (pid") == 1  # printed once on the console
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_an_interrupted_run_says_how_to_go_on(monkeypatch, capsys):
    import peftkit.recipe

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(peftkit.recipe, "load_recipe", interrupted)
    assert main(["run", "r.yaml"]) == 130
    assert "interrupted; run the same command with --resume" in capsys.readouterr().err
