"""A compare file's `search:`: the selection split, trials on one seed, the best value for every seed, resuming."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from peftkit.build.selection import selection_indices
from peftkit.build.setup import prepare
from peftkit.compare import executors
from peftkit.compare.execute import run_compare
from peftkit.compare.grid import expand, load_compare
from peftkit.compare.search import studies, trial_cell
from peftkit.errors import RecipeError
from peftkit.kit.tiny import sentiment_rows, tiny_recipe
from peftkit.plugin.registry import get_registry
from peftkit.recipe import validate
from peftkit.train import loop as runner


@pytest.fixture(scope="module")
def own_ids(tmp_path_factory) -> dict:
    """Train and dev files whose row ids cannot collide (t0.., d0..), so disjointness is checked by id."""
    d = tmp_path_factory.mktemp("ids")
    files = {}
    for split, n, seed, prefix in (("train", 60, 1, "t"), ("dev", 20, 2, "d"), ("test", 4, 3, "x")):
        rows = [{**r, "id": f"{prefix}{r['id']}"} for r in sentiment_rows(n, seed)]
        files[split] = d / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def _ids(enc) -> list[str]:
    return [e.id for e in enc.examples]


def test_selection_split_is_held_out_from_training_and_dev(tiny_bert, own_ids, tmp_path, caplog):
    reg = get_registry()
    plain = prepare(validate(tiny_recipe(tiny_bert, own_ids, tmp_path / "a"), registry=reg), reg)
    assert "eval.split: selection holds" not in caplog.text
    data = tiny_recipe(tiny_bert, own_ids, tmp_path / "b")
    data["eval"] = {"split": "selection"}
    data["data"]["selection_fraction"] = 0.25
    s = prepare(validate(data, registry=reg), reg)
    sel, used, dev = set(_ids(s.data["dev"])), set(_ids(s.data["train"])), set(_ids(plain.data["dev"]))
    assert len(sel) == 16 and len(used) == 44  # 25% of each label's 30 rows, rounded: 8 + 8
    assert "eval.split: selection holds 16 rows (data.selection_fraction=0.25 of 60 training rows)" in caplog.text
    assert not sel & used and not sel & dev  # never trained on, never a dev row
    assert sel | used == set(_ids(plain.data["train"]))  # every training row is in exactly one of them
    labels = s.data["dev"].labels
    assert abs(int((labels == 0).sum()) - int((labels == 1).sum())) <= 1  # stratified: both labels, balanced
    again = prepare(validate(data, registry=reg), reg)
    assert _ids(again.data["dev"]) == _ids(s.data["dev"])  # a function of the seed: every trial scores these rows
    data["train"]["seed"] = 1
    assert set(_ids(prepare(validate(data, registry=reg), reg).data["dev"])) != sel


def test_selection_indices_keep_a_training_row_of_every_label():
    import numpy as np

    labels = np.array([0, 0, 0, 0, 1, 1])
    idx = selection_indices(labels, 0.9, seed=0)
    assert set(labels[idx]) == {0, 1} and len(idx) == 4  # 0.9 of 4 → 3 (one left), 0.9 of 2 → 1 (one left)


def grid_dict(model, data, out, search, **extra) -> dict:
    grid = {
        "title": "search grid",
        "output_dir": str(out),
        "executor": "inprocess",
        "base": {
            "model": {"source": f"local:{model}"},
            "data": {"max_length": 32},
            "train": {"max_steps": 16, "batch_size": 24, "lr": 1e-3, "log_every": 8, "warmup": 0},
            "eval": {"every": 8},
        },
        "methods": [{"name": "lora", "params": {"r": 8, "dropout": 0.0}}],
        "tasks": [
            {
                "label": "sent",
                "name": "text-classification",
                "params": {"train_file": str(data["train"]), "dev_file": str(data["dev"]), "labels": ["neg", "pos"]},
            }
        ],
        "seeds": [0, 1],
        "search": search,
    }
    grid.update(extra)
    return grid


def write_grid(path, grid: dict):
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def _counting_run(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = runner.run

    def run(recipe, **kw):
        calls.append(recipe.output_dir)
        return real(recipe, **kw)

    monkeypatch.setattr(runner, "run", run)
    return calls


def test_search_picks_the_rate_that_learns_and_every_seed_uses_it(tmp_path, tiny_bert, tiny_data, monkeypatch):
    """1e-9 leaves the model where it started; 3e-2 learns (measured: 0.79 on the selection rows, chance 0.5). The trials score the selection split, not dev."""
    out = tmp_path / "out"
    search = {"space": {"train.lr": [1e-9, 3e-2]}, "selection_fraction": 0.25}
    grid_file = write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, out, search))
    calls = _counting_run(monkeypatch)
    res = run_compare(load_compare(grid_file), report=True)
    assert not res.failed, res.status
    trials = [out / "_search" / "sent" / "lora" / f"trial{i}" for i in (0, 1)]
    assert calls[:2] == [str(t) for t in trials] and len(calls) == 4  # the search first, then the two seeds
    scores = [json.loads((t / "metrics.json").read_text())["final"]["accuracy"] for t in trials]
    assert scores[1] > scores[0] + 0.2, scores  # a real difference, not a tie broken by order
    summary = json.loads((out / "_search" / "sent" / "lora" / "search.json").read_text())
    assert summary["chosen"] == {"train.lr": 3e-2} and summary["best_trial"] == 1 and summary["split"] == "selection"
    for t in trials:  # trials ran on the search seed, trained on 72 of the 96 rows and scored the other 24
        m = json.loads((t / "metrics.json").read_text())
        recipe = yaml.safe_load((t / "recipe.yaml").read_text())
        assert recipe["eval"]["split"] == "selection" and recipe["train"]["seed"] == 0
        assert m["eval"]["samples"] == 24
    for c in res.cells:  # every seed at the chosen rate, scored on the real dev split
        m = json.loads((c.output_dir / "metrics.json").read_text())
        assert c.recipe.train.lr == 3e-2 and m["lr"] == 3e-2 and m["eval"]["samples"] == 48
        assert c.recipe.eval.split == "dev"
    calls.clear()
    again = run_compare(load_compare(grid_file), report=False)
    assert calls == [] and set(again.status.values()) == {"skipped"}  # trials and seeds are all finished cells
    report = json.loads((res.report_dir / "report.json").read_text())
    assert report["searches"][0]["chosen"] == {"train.lr": 3e-2}
    assert [t["value"] for t in report["searches"][0]["trials"]] == scores
    assert [r["method"] for r in report["rows"]] == ["lora"]  # the trials are not cells of the table
    md = (res.report_dir / "report.md").read_text()
    assert "## Searches" in md and "selection (25% of train, seed 0)" in md and "0.03 (searched)" in md
    assert "the dev numbers below did not choose the values" in md  # the report says which split chose the rate
    assert (res.report_dir / "plots" / "search.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (res.report_dir / "report.html").read_text().split("Search: each trial")[1]
    from peftkit.cli import main

    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0  # `peftkit report` finds _search too
    assert "## Searches" in (tmp_path / "again" / "report.md").read_text()


def test_a_range_search_resumes_without_rerunning_finished_trials(tmp_path, tiny_bert, tiny_data, monkeypatch):
    out = tmp_path / "out"
    search = {"space": {"train.lr": {"low": 1e-6, "high": 1e-2, "log": True, "trials": 3}}, "split": "dev"}
    grid = grid_dict(tiny_bert, tiny_data, out, search, seeds=[0])
    grid["base"]["train"]["max_steps"] = 2
    grid_file = write_grid(tmp_path / "grid.yaml", grid)
    folder = out / "_search" / "sent" / "lora"
    calls = _counting_run(monkeypatch)
    first = run_compare(load_compare(grid_file), only=["*/trial*"], report=False)  # the search alone
    assert calls == [str(folder / f"trial{i}") for i in range(3)] and not first.failed
    lrs = [json.loads((folder / f"trial{i}" / "metrics.json").read_text())["lr"] for i in range(3)]
    assert len(set(lrs)) == 3 and all(1e-6 <= lr <= 1e-2 for lr in lrs)  # TPE drew three values in the range
    (folder / "trial2" / "metrics.json").unlink()  # trial 2 killed before it finished
    calls.clear()
    second = run_compare(load_compare(grid_file), report=False)
    assert calls == [str(folder / "trial2")]  # trials 0 and 1 are kept; seed 0 on dev is the best trial's run
    assert json.loads((folder / "trial2" / "metrics.json").read_text())["lr"] == lrs[2]  # the same proposal
    acc = [json.loads((folder / f"trial{i}" / "metrics.json").read_text())["final"]["accuracy"] for i in range(3)]
    best = max(range(3), key=lambda i: (acc[i], -i))  # the best score, the earliest trial among equals
    assert second.cells[0].recipe.train.lr == lrs[best]
    info = json.loads((out / "sent" / "lora" / "seed0" / "cell.json").read_text())
    assert info["reused_from"] == str(folder / f"trial{best}") and not second.failed


def test_a_seed_that_is_its_search_s_best_trial_reuses_that_run(tmp_path, tiny_bert, tiny_data, monkeypatch, capsys):
    """With split: dev, the best trial on the search's seed is the very recipe of that seed's cell: the cell gets the
    trial's files instead of a second training of the same run; the other seeds train as before."""
    from peftkit.cli import main
    from peftkit.evaluation.runs import load_run

    out = tmp_path / "out"
    grid = grid_dict(tiny_bert, tiny_data, out, {"split": "dev", "space": {"train.lr": [1e-9, 3e-2]}})
    grid["base"]["train"]["max_steps"] = 8
    grid_file = write_grid(tmp_path / "grid.yaml", grid)
    folder = out / "_search" / "sent" / "lora"
    calls = _counting_run(monkeypatch)
    run_compare(load_compare(grid_file), only=["*/trial*"], report=False)
    assert calls == [str(folder / "trial0"), str(folder / "trial1")]
    capsys.readouterr()
    run_compare(load_compare(grid_file), dry_run=True)
    plan = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert plan["sent/lora/seed0"] == "reuse" and plan["sent/lora/seed1"] == "new"  # the plan says so before
    seed0, seed1 = out / "sent" / "lora" / "seed0", out / "sent" / "lora" / "seed1"
    seed0.mkdir(parents=True)
    (seed0 / "train.log").write_text("an interrupted run\n")  # a broken folder is moved aside, not mixed in
    calls.clear()
    res = run_compare(load_compare(grid_file), report=True)
    assert calls == [str(seed1)] and not res.failed, res.status  # only seed 1 trained
    plan = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert plan == {"sent/lora/seed0": "reuse", "sent/lora/seed1": "new"}  # what the run printed before it began
    best = json.loads((folder / "search.json").read_text())["best_trial"]
    trial = folder / f"trial{best}"
    info = json.loads((seed0 / "cell.json").read_text())
    assert info["status"] == "done" and info["reused_from"] == str(trial) and info["role"] == "cell"
    assert (seed0 / "metrics.json").read_text() == (trial / "metrics.json").read_text()
    weights = next((trial / "model").glob("*.safetensors"))
    assert (seed0 / "model" / weights.name).stat().st_ino == weights.stat().st_ino  # linked, not a second copy
    assert yaml.safe_load((seed0 / "recipe.yaml").read_text())["output_dir"] == str(seed0)
    assert json.loads((trial / "cell.json").read_text())["role"] == "trial"  # the trial's own files are untouched
    assert list((out / "_stale").rglob("train.log"))  # what was in seed0 before
    setup, _ = load_run(seed0)  # a finished run like any other (predict, serve, export)
    assert setup.recipe.train.lr == json.loads((folder / "search.json").read_text())["chosen"]["train.lr"]
    report = json.loads((res.report_dir / "report.json").read_text())
    assert report["rows"][0]["seeds"] == [0, 1]  # both seeds in the table
    calls.clear()
    assert set(run_compare(load_compare(grid_file), report=False).status.values()) == {"skipped"} and calls == []
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0


def test_dry_run_lists_trials_and_pending_seeds(tmp_path, tiny_bert, tiny_data, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("dry run trained a cell"))
    search = {"space": {"train.lr": [1e-4, 1e-3], "train.warmup": [0, 2]}}
    grid_file = write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, tmp_path / "out", search))
    run_compare(load_compare(grid_file), dry_run=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["new"] * 4 + ["pending"] * 2
    assert "sent/lora/trial3" in lines[3] and "lr=0.001 train.warmup=2" in lines[3]  # the last combination
    assert "lr=<search>" in lines[4]
    assert not (tmp_path / "out").exists()


def test_a_method_s_own_search_replaces_the_grid_s(tmp_path, tiny_bert, tiny_data):
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out", {"space": {"train.lr": [1e-4, 1e-3]}})
    grid["methods"] = [
        {"name": "full"},
        {"name": "lora", "search": {"space": {"method.params.r": [2, 4, 8]}}},
        {"name": "bitfit", "search": {"space": {}}},
    ]
    g = load_compare(write_grid(tmp_path / "grid.yaml", grid))
    assert [g.spec.search_for(m).trials if g.spec.search_for(m) else 0 for m in g.spec.methods] == [2, 3, 0]
    cells = expand(g)
    assert [c.pending for c in cells] == [True, True, True, True, False, False]


def test_a_method_s_own_search_keeps_the_grid_s_split_unless_it_sets_its_own(tmp_path, tiny_bert, tiny_data):
    """A method that only lists its own rates is scored like the grid's other methods (here on dev); before, it
    fell back to the defaults and its trials were scored on a selection split the others never used."""
    grid = grid_dict(
        tiny_bert, tiny_data, tmp_path / "out", {"split": "dev", "seed": 1, "space": {"train.lr": [1e-4, 1e-3]}}
    )
    grid["seeds"] = [0, 1]
    grid["methods"] = [
        {"name": "full"},
        {"name": "lora", "search": {"space": {"train.lr": [1e-3, 3e-3, 1e-2]}}},
        {"name": "ia3", "search": {"split": "selection", "selection_fraction": 0.2, "space": {"train.lr": [1e-2]}}},
    ]
    g = load_compare(write_grid(tmp_path / "grid.yaml", grid))
    full, lora, ia3 = (g.spec.search_for(m) for m in g.spec.methods)
    assert (full.split, full.seed, full.space) == ("dev", 1, {"train.lr": [1e-4, 1e-3]})
    assert (lora.split, lora.seed, lora.space) == ("dev", 1, {"train.lr": [1e-3, 3e-3, 1e-2]})
    assert (ia3.split, ia3.selection_fraction, ia3.seed, ia3.trials) == ("selection", 0.2, 1, 1)
    trials = {s.method.key: trial_cell(g, get_registry(), s, 0, {"train.lr": 1e-3}) for s in studies(g, get_registry())}
    assert trials["lora"].recipe.eval.split == "dev" and trials["ia3"].recipe.eval.split == "selection"


@pytest.mark.parametrize(
    "search, expected",
    [
        ({"space": {"train.seed": [0, 1]}}, "'train.seed' cannot be searched"),
        ({"space": {"eval.split": ["dev"]}}, "'eval.split' cannot be searched"),
        ({"space": {"train.lr": []}}, "give at least one value"),
        ({"space": {"train.lr": {"low": 0, "high": 1e-2, "log": True}}}, "a log range needs low > 0"),
        ({"space": {"train.lr": {"low": 1e-2, "high": 1e-3}}}, "low must be below high"),
        ({"space": {"train.lr": [1e-3]}, "seed": 5}, "seed 5 is not one of the grid's seeds [0, 1]"),
        ({"space": {"train.lr": [-1.0]}}, "train.lr"),
        (
            {"space": {"train.lr": [1e-3]}, True: "dev"},
            "reads as True (YAML 1.1); quote it",  # a bare `on:` key: the loader names its line
        ),  # a value the recipe refuses, named before anything runs
    ],
)
def test_bad_searches_are_refused_with_their_place(tmp_path, tiny_bert, tiny_data, search, expected):
    grid_file = write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, tmp_path / "out", search))
    with pytest.raises(RecipeError) as info:
        expand(load_compare(grid_file))
    assert expected in str(info.value) and "search" in str(info.value)


def test_the_command_line_cannot_override_a_searched_key(tmp_path, tiny_bert, tiny_data):
    grid_file = write_grid(
        tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, tmp_path / "out", {"space": {"train.lr": [1e-3]}})
    )
    with pytest.raises(RecipeError, match="train.lr: cannot be overridden on the command line: .*search"):
        load_compare(grid_file, ["train.lr=0.1"])
    assert load_compare(grid_file, ["train.warmup=0.1"]).cli_overrides == {"train": {"warmup": 0.1}}


def test_every_cell_s_process_is_named_for_trackers(tmp_path, tiny_bert, tiny_data, monkeypatch):
    """PEFTKIT_EXPERIMENT = the grid's name, PEFTKIT_RUN_NAME = the cell's: in process and in a subprocess."""
    seen: list[tuple[str, str]] = []
    real_run, real_popen = runner.run, subprocess.Popen

    def run(recipe, **kw):
        import os

        seen.append((os.environ["PEFTKIT_EXPERIMENT"], os.environ["PEFTKIT_RUN_NAME"]))
        return real_run(recipe, **kw)

    def popen(cmd, **kw):  # subprocess.Popen is the module's: anything else that starts a process passes through
        env = kw.get("env") or {}
        if "PEFTKIT_RUN_NAME" in env:
            seen.append((env["PEFTKIT_EXPERIMENT"], env["PEFTKIT_RUN_NAME"]))
        return real_popen(cmd, **kw)

    monkeypatch.setattr(runner, "run", run)
    monkeypatch.setattr(executors.subprocess, "Popen", popen)
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out", {"space": {"train.lr": [1e-2]}}, seeds=[0])
    grid["base"]["train"]["max_steps"] = 1
    res = run_compare(load_compare(write_grid(tmp_path / "my-grid.yaml", grid)), report=False)
    grid["executor"], grid["output_dir"] = "subprocess", str(tmp_path / "sub")
    sub = run_compare(load_compare(write_grid(tmp_path / "my-grid.yaml", grid)), report=False)
    assert not res.failed and not sub.failed
    assert seen == [("my-grid", "sent/lora/trial0"), ("my-grid", "sent/lora/seed0")] * 2
    import os

    assert "PEFTKIT_RUN_NAME" not in os.environ  # set for the cell only


def test_the_shipped_search_grid_plans_its_trials_and_seeds(capsys):
    """recipes/compare/clue-search.yaml: a list search for five methods, full's own list, IA3's Optuna range."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "recipes" / "compare" / "clue-search.yaml"
    grid = load_compare(path)
    cells = expand(grid)
    assert len(cells) == 18 and all(c.pending for c in cells)
    spaces = {m.key: grid.spec.search_for(m) for m in grid.spec.methods}
    assert spaces["full"].space == {"train.lr": [1e-5, 3e-5, 1e-4]} and spaces["ia3"].trials == 4
    assert sum(s.trials for s in spaces.values()) == 19
    assert {s.split for s in spaces.values()} == {"selection"}


def test_a_failed_trial_is_passed_over_and_a_search_without_results_holds_its_seeds(
    tmp_path, tiny_bert, tiny_data, monkeypatch
):
    real = runner.run
    refused: set[float] = {2e-3}

    def run(recipe, **kw):
        if recipe.train.lr in refused:
            raise RuntimeError("loss is NaN")  # what a too-high rate does
        return real(recipe, **kw)

    monkeypatch.setattr(runner, "run", run)
    grid = grid_dict(tiny_bert, tiny_data, tmp_path / "out", {"space": {"train.lr": [1e-3, 2e-3]}}, seeds=[0])
    grid["base"]["train"]["max_steps"] = 1
    grid_file = write_grid(tmp_path / "grid.yaml", grid)
    res = run_compare(load_compare(grid_file), report=False)
    assert res.failed == ["sent/lora/trial1"] and res.status["sent/lora/seed0"] == "done"
    assert res.cells[0].recipe.train.lr == 1e-3  # the best of the trials that finished
    refused.add(1e-3)
    grid["search"]["space"]["train.lr"] = [1e-3, 2e-3][::-1]  # a new order: new trials, and every one fails
    grid["output_dir"] = str(tmp_path / "other")
    res = run_compare(load_compare(write_grid(grid_file, grid)), report=False)
    assert res.status["sent/lora/seed0"] == "failed: its search has no finished trial (see compare.log)"
    assert not (tmp_path / "other" / "sent").exists()  # no seed ran at a made-up rate


def test_at_edge_names_a_chosen_value_at_either_end_of_three_or_more_numbers():
    from peftkit.compare.spec import at_edge

    space = {"train.lr": [1e-3, 3e-4, 3e-3], "method.params.r": [4, 8], "train.scheduler": ["linear", "cosine", "c"]}
    assert at_edge(space, {"train.lr": 3e-3, "method.params.r": 8, "train.scheduler": "c"}) == {"train.lr": "largest"}
    assert at_edge(space, {"train.lr": 3e-4}) == {"train.lr": "smallest"}  # list order does not matter
    assert at_edge(space, {"train.lr": 1e-3}) == {} and at_edge(space, None) == {}
    assert at_edge({"train.lr": {"low": 1e-4, "high": 1e-2, "log": True, "trials": 4}}, {"train.lr": 1e-2}) == {}


def test_a_search_whose_best_value_is_the_largest_tried_says_so(tmp_path, tiny_bert, tiny_data):
    """3e-2 learns and 1e-9 / 1e-8 leave the model where it started (see the first test): the best is the top of
    the list, so the optimum may lie above it; the compare log and the report's Searches table both say so."""
    out = tmp_path / "out"
    search = {"space": {"train.lr": [1e-9, 1e-8, 3e-2]}, "selection_fraction": 0.25}
    grid_file = write_grid(tmp_path / "grid.yaml", grid_dict(tiny_bert, tiny_data, out, search, seeds=[0]))
    res = run_compare(load_compare(grid_file), only=["*/trial*"], report=False)
    assert not res.failed and res.studies[0].best.params == {"train.lr": 3e-2}
    log = (out / "compare.log").read_text()  # a run's own logging replaces pytest's capture, not compare's log
    assert "WARNING sent/lora: the best train.lr=0.03 is the largest value tried" in log
    assert "add larger values to its list in search.space (at the end," in log
    from peftkit.compare.report.runs import load_searches
    from peftkit.compare.report.sections import search_table

    _, body = search_table(load_searches([out / "_search"]), pct=True)
    assert body[0][6] == ("train.lr=0.03 (largest tried)", True)
