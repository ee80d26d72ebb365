"""`peftkit compare`: grid expansion, per-method overrides, errors with paths, dry run, resumability, parallel cells."""

from __future__ import annotations

import json

import pytest
import yaml

from peftkit.cli import main
from peftkit.compare.cells import cell_status
from peftkit.compare.execute import run_compare
from peftkit.compare.grid import chosen_settings, expand, load_compare, settings_hash
from peftkit.errors import PeftkitError, RecipeError
from peftkit.plugin.registry import get_registry
from peftkit.train import loop as runner


def grid_dict(model, data, out, **extra) -> dict:
    """2 methods (lora twice, different r and lr) × 1 task × 2 seeds, a few steps each."""
    grid = {
        "title": "tiny grid",
        "output_dir": str(out),
        "executor": "inprocess",
        "base": {
            "model": {"source": f"local:{model}"},
            "data": {"max_length": 32},
            "train": {"max_steps": 2, "batch_size": 8, "lr": 2e-2, "log_every": 2},
            "eval": {"every": 1},
        },
        "methods": [
            {"label": "lora-r2", "name": "lora", "params": {"r": 2}},
            {"label": "lora-r8", "name": "lora", "params": {"r": 8}, "overrides": {"train.lr": 3e-2}},
        ],
        "tasks": [
            {
                "label": "sent",
                "name": "text-classification",
                "params": {"train_file": str(data["train"]), "dev_file": str(data["dev"]), "labels": ["neg", "pos"]},
            }
        ],
        "seeds": [0, 1],
    }
    grid.update(extra)
    return grid


def write_grid(path, grid: dict):
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture
def grid_file(tmp_path, tiny_bert, tiny_data):
    return write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, tmp_path / "out"))


def test_expansion_names_dirs_and_overrides(grid_file, tmp_path):
    cells = expand(load_compare(grid_file))
    assert [c.name for c in cells] == [
        "sent/lora-r2/seed0",
        "sent/lora-r2/seed1",
        "sent/lora-r8/seed0",
        "sent/lora-r8/seed1",
    ]
    assert [c.recipe.train.seed for c in cells] == [0, 1, 0, 1]
    assert [c.recipe.method.params["r"] for c in cells] == [2, 2, 8, 8]
    assert [c.recipe.train.lr for c in cells] == [2e-2, 2e-2, 3e-2, 3e-2]  # the per-method override
    assert cells[3].output_dir == tmp_path / "out" / "sent" / "lora-r8" / "seed1"
    assert len({c.hash for c in cells}) == 4
    assert cells[0].hash == settings_hash(chosen_settings(cells[0].recipe, get_registry()))


def test_per_seed_values_go_with_their_seed_and_average_as_seeds(tmp_path, tiny_bert, tiny_data):
    """FewCLUE's protocol in a grid: run i trains on its own file; the cells stay seeds of one (task, method)."""
    other = tmp_path / "train-b.jsonl"
    other.write_text(tiny_data["train"].read_text())
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out", seeds=[3, 7])
    grid["tasks"][0]["per_seed"] = {
        "task.params.train_file": [str(tiny_data["train"]), str(other)],
        "train.lr": [0.1, 0.2],
    }
    grid["methods"][1]["overrides"] = {}  # a method's override would win over the per-seed lr
    cells = expand(load_compare(write_grid(tmp_path / "grid.yaml", grid)))
    assert [(c.name, c.recipe.task.params["train_file"], c.recipe.train.lr) for c in cells] == [
        ("sent/lora-r2/seed3", str(tiny_data["train"]), 0.1),
        ("sent/lora-r2/seed7", str(other), 0.2),
        ("sent/lora-r8/seed3", str(tiny_data["train"]), 0.1),
        ("sent/lora-r8/seed7", str(other), 0.2),
    ]
    grid["methods"][1]["overrides"] = {"train.lr": 0.5}
    cells = expand(load_compare(write_grid(tmp_path / "grid.yaml", grid)))
    assert [c.recipe.train.lr for c in cells] == [0.1, 0.2, 0.5, 0.5]  # method overrides still win


def test_hash_is_what_the_grid_chose_not_every_default(grid_file):
    """Writing a default out, or a new peftkit adding a key with a default, leaves finished cells finished."""
    a = expand(load_compare(grid_file))
    assert [c.hash for c in expand(load_compare(grid_file, ["train.compile=false", "train.scheduler=linear"]))] == [
        c.hash for c in a
    ]
    assert "compile" not in chosen_settings(a[0].recipe, get_registry())["train"]


def test_hash_ignores_output_dir_but_not_settings(grid_file, tmp_path, tiny_bert, tiny_data):
    a = expand(load_compare(grid_file))
    moved = write_grid(tmp_path / "g2.yaml", grid_dict(tiny_bert, tiny_data, tmp_path / "elsewhere"))
    assert [c.hash for c in expand(load_compare(moved))] == [c.hash for c in a]
    changed = expand(load_compare(grid_file, ["train.warmup=0.2"]))
    assert not {c.hash for c in changed} & {c.hash for c in a}


def test_command_line_overrides_beat_per_method_ones(grid_file):
    cells = expand(load_compare(grid_file, ["train.lr=0.005", "train.max_steps=5"]))
    assert {c.recipe.train.lr for c in cells} == {0.005}
    assert {c.recipe.train.max_steps for c in cells} == {5}


def test_command_line_cannot_override_what_names_a_cell(grid_file):
    """A cell labelled sent/lora must train that task and method with its seed, in its own folder."""
    with pytest.raises(RecipeError) as info:
        load_compare(
            grid_file,
            ["task.name=clue/tnews", "method.name=full", "train.seed=7", "output_dir=/tmp/x", "train.lr=1e-3"],
        )
    assert [p.split(":")[0] for p in info.value.problems] == ["task.name", "method.name", "train.seed", "output_dir"]
    assert "cannot be overridden on the command line: add another entry under `tasks:`" in info.value.problems[0]


def test_base_from_a_recipe_file(tmp_path, tiny_bert, tiny_data):
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out")
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump({**grid["base"], "method": {"name": "full"}, "output_dir": "ignored"})
    )
    grid["base"] = "base.yaml"  # relative to the compare file
    cells = expand(load_compare(write_grid(tmp_path / "grid.yaml", grid)))
    assert {c.recipe.method.name for c in cells} == {"lora"} and {c.recipe.train.max_steps for c in cells} == {2}


def test_broken_cell_names_path_cell_and_line(tmp_path, tiny_bert, tiny_data):
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out")
    grid["methods"][1]["overrides"] = {"train.lr": -1}
    grid["methods"][1]["params"] = {"r": 0}
    path = write_grid(tmp_path / "grid.yaml", grid)
    with pytest.raises(RecipeError) as exc:
        expand(load_compare(path))
    msg = str(exc.value)
    assert "train.lr: must be greater than 0" in msg and "method.params.r" in msg
    assert "methods.1.overrides.train.lr" in msg and "cells sent/lora-r8/seed0, sent/lora-r8/seed1" in msg
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "train.lr: -1" in t)
    assert f"{path}:{line - 1}" in msg or f"{path}:{line}" in msg  # the overrides key (or the key itself)
    assert "lora-r2" not in msg  # the valid method's cells are not blamed


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda g: g.update(sedes=[1]), "sedes: unknown key — did you mean 'seeds'?"),
        (lambda g: g["methods"][1].update(label="lora-r2"), "methods.1: label 'lora-r2' is used twice"),
        (lambda g: g["methods"][0].update(overrides={"train.seed": 3}), "'train.seed' cannot be overridden"),
        (lambda g: g["methods"][0].update(label="a/b"), "methods.0.label: string should match pattern"),
        (lambda g: g.update(seeds=[1, 1]), "seeds: seeds must be distinct"),
        (
            lambda g: g["tasks"][0].update(per_seed={"train.lr": [0.1]}),
            "tasks.0.per_seed.train.lr: 1 values for 2 seeds ([0, 1]); give one value per seed",
        ),
        (lambda g: g["tasks"][0].update(per_seed={"output_dir": ["a", "b"]}), "'output_dir' cannot be overridden"),
    ],
)
def test_compare_file_errors(tmp_path, tiny_bert, tiny_data, change, expected):
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out")
    change(grid)
    with pytest.raises(RecipeError) as exc:
        load_compare(write_grid(tmp_path / "grid.yaml", grid))
    assert expected in str(exc.value)
    assert f"{tmp_path / 'grid.yaml'}:" in str(exc.value)  # file:line


def test_dry_run_prints_one_line_per_cell_and_runs_nothing(grid_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("dry run trained a cell"))
    assert main(["compare", str(grid_file), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("new") and "sent/lora-r8/seed0" in lines[2] and "lr=0.03" in lines[2]
    assert not (tmp_path / "out" / "sent").exists()


def _counting_run(monkeypatch) -> list[str]:
    """Wrap the real runner so a test can see which cells actually trained."""
    calls: list[str] = []
    real = runner.run

    def run(recipe, **kw):
        calls.append(recipe.output_dir)
        return real(recipe, **kw)

    monkeypatch.setattr(runner, "run", run)
    return calls


def test_resume_skips_finished_and_redoes_broken_or_changed(tmp_path, tiny_bert, tiny_data, monkeypatch):
    out = tmp_path / "out"
    grid_file = write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, out, seeds=[0, 1]))
    calls = _counting_run(monkeypatch)
    res = run_compare(load_compare(grid_file), only=["*/lora-r2/*", "*/lora-r8/seed0"], report=False)
    assert len(calls) == 3 and not res.failed
    metrics = sorted(out.glob("sent/*/seed*/metrics.json"))
    assert len(metrics) == 3
    stamp = {p: p.stat().st_mtime_ns for p in metrics}

    calls.clear()
    res = run_compare(load_compare(grid_file), only=["*/lora-r2/*", "*/lora-r8/seed0"], report=False)
    assert calls == [] and set(res.status.values()) == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in metrics} == stamp

    broken = out / "sent" / "lora-r2" / "seed1" / "metrics.json"
    broken.write_text('{"params": ')  # a run killed while writing, or a corrupted file
    res = run_compare(load_compare(grid_file), only=["*/lora-r2/*"], report=False)
    assert calls == [str(broken.parent)] and res.status["sent/lora-r2/seed1"] == "done"
    assert res.status["sent/lora-r2/seed0"] == "skipped"
    assert "final" in json.loads(broken.read_text())

    calls.clear()
    old = json.loads((out / "sent" / "lora-r8" / "seed0" / "metrics.json").read_text())
    grid = yaml.safe_load(grid_file.read_text())
    grid["methods"][1]["overrides"]["train.lr"] = 1e-2  # new hash for the lora-r8 cells
    write_grid(grid_file, grid)
    cells = expand(load_compare(grid_file))
    assert [cell_status(c) for c in cells] == ["done", "done", "changed", "new"]
    run_compare(load_compare(grid_file), only=["*/lora-r8/seed0"], report=False)
    assert calls == [str(out / "sent" / "lora-r8" / "seed0")]
    stale = list((out / "_stale" / "sent" / "lora-r8").iterdir())
    assert len(stale) == 1 and json.loads((stale[0] / "metrics.json").read_text()) == old  # moved, not deleted
    assert f"moved it to {stale[0]}" in (out / "compare.log").read_text()
    assert json.loads((out / "sent" / "lora-r8" / "seed0" / "metrics.json").read_text())["lr"] == 1e-2


def test_a_cell_another_process_is_writing_is_left_alone(tmp_path, tiny_bert, tiny_data, monkeypatch):
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    grid_file = write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, out, seeds=[0]))
    busy = out / "sent" / "lora-r2" / "seed0"
    busy.mkdir(parents=True)
    (busy / "cell.json").write_text('{"status": "running", "mine": true}')
    script = (
        "import pathlib, sys, time\n"
        "from peftkit.run_dir import run_lock\n"
        "with run_lock(pathlib.Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    # a second compare's cell, training: it holds the folder's run lock
    holder = subprocess.Popen([sys.executable, "-c", script, str(busy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cells = expand(load_compare(grid_file))
        assert [cell_status(c) for c in cells] == ["running", "new"]
        calls = _counting_run(monkeypatch)
        res = run_compare(load_compare(grid_file), report=False)
        assert calls == [str(out / "sent" / "lora-r8" / "seed0")]  # the other cell ran; the busy one did not
        assert res.failed == ["sent/lora-r2/seed0"] and f"pid {holder.pid}" in res.status["sent/lora-r2/seed0"]
        assert json.loads((busy / "cell.json").read_text()) == {"status": "running", "mine": True}  # untouched
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    assert cell_status(cells[0]) == "broken"  # its holder is gone (killed): a stale lock file, redone next time


def test_a_failed_cell_does_not_stop_the_others(grid_file, tmp_path, monkeypatch):
    real = runner.run

    def run(recipe, **kw):
        if recipe.method.params["r"] == 8:
            raise RuntimeError("CUDA out of memory" if recipe.train.seed == 0 else "")
        return real(recipe, **kw)

    monkeypatch.setattr(runner, "run", run)
    res = run_compare(load_compare(grid_file, ["train.max_steps=1", "eval.every=1"]), only=["*/seed1", "*/lora-r8/*"])
    assert sorted(res.failed) == ["sent/lora-r8/seed0", "sent/lora-r8/seed1"]
    assert res.status["sent/lora-r2/seed1"] == "done"
    info = json.loads((tmp_path / "out" / "sent" / "lora-r8" / "seed0" / "cell.json").read_text())
    assert info["status"] == "failed" and "CUDA out of memory" in info["error"]
    assert cell_status(res.cells[1]) == "broken"  # a folder without metrics.json: redone next time
    report = json.loads((res.report_dir / "report.json").read_text())
    assert [r["method"] for r in report["rows"]] == ["lora-r2"]  # the report holds the finished cells only


def test_cells_in_parallel_subprocesses_give_the_same_results(tmp_path, tiny_bert, tiny_data):
    """Two 'devices' (CUDA_VISIBLE_DEVICES=0/1; CPU here) at once == one after another in-process."""
    base = grid_dict(tiny_bert, tiny_data, tmp_path / "seq")
    base["methods"] = base["methods"][:1]
    seq = run_compare(load_compare(write_grid(tmp_path / "seq.yaml", base)), report=False)
    par_grid = {**base, "output_dir": str(tmp_path / "par"), "executor": "subprocess", "devices": ["0", "1"]}
    par = run_compare(load_compare(write_grid(tmp_path / "par.yaml", par_grid)), report=False)
    assert not seq.failed and not par.failed, (
        par.status,
        [(c.output_dir / "cell.log").read_text()[-2000:] for c in par.cells],
    )
    for a, b in zip(seq.cells, par.cells):
        ma = json.loads((a.output_dir / "metrics.json").read_text())
        mb = json.loads((b.output_dir / "metrics.json").read_text())
        assert a.hash == b.hash
        assert ma["final"] == mb["final"] and ma["history"] == mb["history"]
    infos = [json.loads((c.output_dir / "cell.json").read_text()) for c in par.cells]
    assert {i["device"] for i in infos} == {"0", "1"}
    assert max(i["started"] for i in infos) < min(i["finished"] for i in infos)  # they really overlapped


@pytest.mark.parametrize("name", ["clue-methods.yaml", "clue-methods-gpu.yaml"])
def test_shipped_compare_files_expand(name):
    """The compare files in recipes/compare validate cell by cell (no model is loaded)."""
    from pathlib import Path

    grid = load_compare(Path(__file__).resolve().parents[2] / "recipes" / "compare" / name)
    cells = expand(grid)
    methods = {c.recipe.method.name for c in cells}
    assert methods == {"lora", "adalora", "adapters", "full", "ia3", "bitfit"}
    assert {c.task for c in cells} == {"afqmc", "tnews", "cluewsc2020"}
    assert len(cells) == len(grid.spec.methods) * 3 * len(grid.spec.seeds)
    assert {c.recipe.train.lr for c in cells if c.recipe.method.name == "full"} == {5e-5}


def test_only_that_matches_nothing_is_an_error(grid_file):
    with pytest.raises(PeftkitError, match="no cell matches; cell names look like sent/lora-r2/seed0"):
        run_compare(load_compare(grid_file), only=["afqmc/*"])


def test_compare_file_errors_say_compare_file(tmp_path):
    from peftkit.compare.grid import load_compare
    from peftkit.errors import RecipeError

    path = tmp_path / "grid.yaml"
    path.write_text("methods: [{name: lora}]\ntasks: [{name: clue/afqmc}]\nseed: [0]\n")
    with pytest.raises(RecipeError) as info:
        load_compare(path)
    assert str(info.value).startswith(f"invalid compare file {path} (") and "did you mean 'seeds'" in str(info.value)


def test_exclude_leaves_cells_out_and_a_stray_pattern_is_an_error(tmp_path, tiny_bert, tiny_data):
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out", exclude=["sent/lora-r8/seed1"])
    cells = expand(load_compare(write_grid(tmp_path / "g.yaml", grid)))
    assert [c.name for c in cells] == ["sent/lora-r2/seed0", "sent/lora-r2/seed1", "sent/lora-r8/seed0"]
    grid["exclude"] = ["sent/lora-r9/*"]
    with pytest.raises(
        RecipeError, match=r"exclude: 'sent/lora-r9/\*' matches no cell; cell names look like sent/lora-r2/seed0"
    ):
        expand(load_compare(write_grid(tmp_path / "g.yaml", grid)))


def test_a_method_that_cannot_train_a_task_s_head_points_at_exclude(tmp_path, tiny_bert):
    grid = {
        "output_dir": str(tmp_path / "out"),
        "base": {"model": {"source": f"local:{tiny_bert}"}},
        "methods": [{"name": "lora"}, {"name": "prefix"}],
        "tasks": [{"name": "fewclue/chid", "params": {"data_dir": str(tmp_path)}}],
        "seeds": [0, 1],
    }
    with pytest.raises(RecipeError) as info:
        expand(load_compare(write_grid(tmp_path / "g.yaml", grid)))
    assert (
        "method 'prefix' cannot train task 'fewclue/chid', which needs a multiple-choice head. Leave the pair out of the "
        'grid with `exclude: ["chid/prefix/*"]` [cells chid/prefix/seed0, chid/prefix/seed1]'
    ) in str(info.value)
    grid["exclude"] = ["chid/prefix/*"]
    assert [c.name for c in expand(load_compare(write_grid(tmp_path / "g.yaml", grid)))] == [
        "chid/lora/seed0",
        "chid/lora/seed1",
    ]


def test_a_grid_checks_the_method_against_the_cell_s_task_objective(tmp_path, tiny_llama):
    """fewclue/chid's own objective is multiple choice, which prefix cannot train; scored by label likelihood (the
    cell's task.objective) it can: the check goes by the objective the cell trains, not the task's default."""
    grid = {
        "output_dir": str(tmp_path / "out"),
        "base": {"model": {"source": f"local:{tiny_llama}"}},
        "methods": [{"name": "lora"}, {"name": "prefix"}],
        "tasks": [{"name": "fewclue/chid", "params": {"data_dir": str(tmp_path)}}],
        "seeds": [0],
    }
    with pytest.raises(RecipeError) as info:
        expand(load_compare(write_grid(tmp_path / "g.yaml", grid)))
    assert (
        "method 'prefix' cannot train task 'fewclue/chid', which needs a multiple-choice head. Leave the pair "
        'out of the grid with `exclude: ["chid/prefix/*"]` [cell chid/prefix/seed0]'
    ) in str(info.value)
    grid["tasks"][0]["overrides"] = {"task.objective": "label-likelihood"}
    assert [c.name for c in expand(load_compare(write_grid(tmp_path / "g.yaml", grid)))] == [
        "chid/lora/seed0",
        "chid/prefix/seed0",
    ]


def test_the_shipped_fewclue_grid_covers_every_fewclue_task_but_prefix_on_chid():
    from pathlib import Path

    grid = load_compare(Path(__file__).resolve().parents[2] / "recipes" / "compare" / "fewclue-methods.yaml")
    cells = expand(grid)
    assert {c.task for c in cells} == {
        "eprstmt",
        "bustm",
        "ocnli",
        "csl",
        "cluewsc",
        "tnews",
        "iflytek",
        "csldcp",
        "chid",
    }
    assert len(cells) == 9 * 7 * 3 - 3 and not [c for c in cells if c.name.startswith("chid/prefix/")]
    assert {c.recipe.train.batch_size for c in cells if c.task == "chid"} == {8}
    # every cell scores FewCLUE's labelled public test set once, for `peftkit report --split test`
    assert all(c.recipe.eval.predict and c.recipe.task.params["test_split"] == "test_public" for c in cells)


def test_the_shipped_fewclue_protocol_grid_trains_run_i_on_train_i():
    from pathlib import Path

    grid = load_compare(Path(__file__).resolve().parents[2] / "recipes" / "compare" / "fewclue-protocol.yaml")
    cells = expand(grid)
    assert len(cells) == 9 * 7 * 5 - 5 and not [c for c in cells if c.name.startswith("chid/prefix/")]
    for c in cells:  # seed i ↔ FewCLUE run i, picked on its own dev_i (the default pairing), scored on test_public
        assert c.recipe.task.params["train_split"] == f"train_{c.seed}" and c.recipe.train.seed == c.seed
        assert c.recipe.task.params["test_split"] == "test_public" and c.recipe.eval.predict
    assert {c.recipe.train.epochs for c in cells if c.task == "eprstmt"} == {100}


def test_a_grid_can_report_its_cells_on_a_labelled_test_split(tmp_path, tiny_bert, tiny_data):
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out", split="test", seeds=[0])
    grid["tasks"][0]["params"]["test_file"] = str(tiny_data["dev"])  # labelled: scored once after training
    grid["base"]["eval"]["predict"] = True
    res = run_compare(load_compare(write_grid(tmp_path / "grid.yaml", grid)))
    report = json.loads((res.report_dir / "report.json").read_text())
    tested = {c.method: json.loads((c.output_dir / "metrics.json").read_text())["test"]["accuracy"] for c in res.cells}
    assert report["settings"]["split"] == "test"
    assert {r["method"]: r["values"] for r in report["rows"]} == {m: [v] for m, v in tested.items()}


def test_per_seed_runs_report_as_seeds_of_one_method(tmp_path, tiny_bert, tiny_data):
    """Cells that differ only in their per_seed values are one method's seeds in the report, not split labels;
    cells finished before per_seed was written get it recorded on the next compare, without rerunning."""
    other = tmp_path / "train-b.jsonl"
    other.write_text(tiny_data["train"].read_text())
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out")
    grid["tasks"][0]["per_seed"] = {"task.params.train_file": [str(tiny_data["train"]), str(other)]}
    path = write_grid(tmp_path / "grid.yaml", grid)
    res = run_compare(load_compare(path))
    report = json.loads((res.report_dir / "report.json").read_text())
    assert {r["method"]: r["seeds"] for r in report["rows"]} == {"lora-r2": [0, 1], "lora-r8": [0, 1]}
    cell = res.cells[1].output_dir / "cell.json"
    info = json.loads(cell.read_text())
    assert info["seed_keys"] == ["task.params.train_file"]
    del info["seed_keys"]  # as a cell written before per_seed existed
    cell.write_text(json.dumps(info))
    again = run_compare(load_compare(path))
    assert set(again.status.values()) == {"skipped"} and json.loads(cell.read_text())["seed_keys"] == [
        "task.params.train_file"
    ]
    assert {r["method"] for r in json.loads((again.report_dir / "report.json").read_text())["rows"]} == {
        "lora-r2",
        "lora-r8",
    }
