"""`peftkit report`: numbers taken from the runs' metrics.json, the files written, plots, the HTML page."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import statistics

import numpy as np
import pytest
import yaml

from peftkit.cli import main
from peftkit.compare.execute import run_compare
from peftkit.compare.grid import load_compare
from peftkit.compare.report.runs import find_run_dirs, load_runs
from peftkit.compare.report.tables import Row, clue_average
from peftkit.compare.report.write import write_report
from peftkit.errors import PeftkitError

PLOTS = ("tradeoff", "bars", "curves")


def grid_dict(model, data, out) -> dict:
    """2 methods (lora twice, different r and lr) × 1 task × 2 seeds, a few steps each (as in test_compare)."""
    return {
        "title": "tiny grid",
        "output_dir": str(out),
        "executor": "inprocess",
        "base": {
            "model": {"source": f"local:{model}"},
            "data": {"max_length": 32},
            "train": {"max_steps": 3, "batch_size": 8, "lr": 2e-2, "log_every": 2},
            "eval": {"every": 2},
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


def write_grid(path, grid: dict):
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_bert, tiny_data):
    """A finished 2 methods × 1 task × 2 seeds comparison and its report."""
    d = tmp_path_factory.mktemp("report")
    res = run_compare(load_compare(write_grid(d / "grid.yaml", grid_dict(tiny_bert, tiny_data, d / "out"))))
    assert not res.failed, res.status
    return res


def _expected(res, metric: str = "accuracy") -> dict[str, dict]:
    """Per method label: the dev metric of its cells, read straight from their metrics.json."""
    out: dict[str, dict] = {}
    for c in res.cells:
        m = json.loads((c.output_dir / "metrics.json").read_text())
        e = out.setdefault(c.method, {"values": [], "params": m["params"], "peak": [], "sps": []})
        e["values"].append(m["final"][metric])
        e["peak"].append(m["memory"]["peak_bytes"])
        e["sps"].append(m["train"]["samples_per_second"])
    return out


def test_report_files(compared):
    d = compared.report_dir
    assert d == compared.cells[0].output_dir.parents[2] / "report"
    for name in ("report.md", "report.csv", "report.json", "report.html", *(f"plots/{p}.png" for p in PLOTS)):
        assert (d / name).is_file() and (d / name).stat().st_size > 0, name
    md, page = (d / "report.md").read_text(), (d / "report.html").read_text()
    for c in compared.cells:  # every number traces back to its run folder
        assert f"- sent / {c.method}, seed {c.seed}: `{c.output_dir}`" in md and str(c.output_dir) in page


@pytest.mark.parametrize("metric", ["accuracy", "eval_loss"])
def test_report_numbers_match_the_runs(compared, metric, tmp_path):
    # A few steps on the tiny model leave accuracy at chance for every seed, so eval_loss (different per
    # seed, lower is better) checks the std and the best mark with values that really differ.
    if metric == "accuracy":
        report = json.loads((compared.report_dir / "report.json").read_text())
    else:
        write_report([c.output_dir for c in compared.cells], tmp_path / "rep", metric=metric)
        report = json.loads((tmp_path / "rep" / "report.json").read_text())
    exp = _expected(compared, metric)
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["lora-r2", "lora-r8"]
    for label, e in exp.items():
        r = rows[label]
        assert r["values"] == e["values"] and r["seeds"] == [0, 1] and r["task"] == "sent" and r["metric"] == metric
        assert r["mean"] == pytest.approx(statistics.fmean(e["values"]))
        assert r["std"] == pytest.approx(statistics.stdev(e["values"]))
        assert r["trainable"] == e["params"]["trainable"] and r["trainable_percent"] == e["params"]["percent"]
        assert r["peak_memory_bytes"] == pytest.approx(statistics.fmean(e["peak"]))
        assert r["samples_per_second"] == pytest.approx(statistics.fmean(e["sps"]))
    for label, r in rows.items():  # † = some seed answers one class for >= 99% of dev
        assert r["collapsed"] == any(
            json.loads((c.output_dir / "metrics.json").read_text())["eval"]["top_class_share"] >= 0.99
            for c in compared.cells
            if c.method == label
        )
    live = [r for r in rows.values() if not r["collapsed"]]
    pick = max if metric == "accuracy" else min
    if live and len({r["mean"] for r in rows.values()}) > 1:
        best = pick(live, key=lambda r: r["mean"])
        assert best["best"] and report["best"] == {"sent": [m for m, r in rows.items() if r["best"]]}
    else:  # every method collapsed or tied: nothing is marked best
        assert not any(r["best"] for r in rows.values()) and report["best"] == {"sent": []}
    assert report["average"]["tasks"] == ["sent"]
    assert report["average"]["by_method"] == pytest.approx({m: r["mean"] for m, r in rows.items()})
    assert rows["lora-r2"]["trainable"] < rows["lora-r8"]["trainable"]
    if metric == "eval_loss":
        assert all(r["std"] > 0 for r in rows.values()) and sum(r["best"] for r in rows.values()) <= 1
        md = (tmp_path / "rep" / "report.md").read_text()
        for r in rows.values():  # losses: raw, 4 decimals, not ×100; bold when best, † when collapsed
            cell = f"{r['mean']:.4f} ± {r['std']:.4f}" + (" †" if r["collapsed"] else "")
            assert (f"**{cell}**" if r["best"] else f"| {cell} |") in md


def test_csv_and_markdown_show_the_same_numbers(compared):
    exp = _expected(compared)
    with open(compared.report_dir / "report.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    md = (compared.report_dir / "report.md").read_text()
    for label, e in exp.items():
        mean, std = statistics.fmean(e["values"]), statistics.stdev(e["values"])
        assert float(rows[label]["mean"]) == pytest.approx(mean) and float(rows[label]["std"]) == pytest.approx(std)
        assert [float(v) for v in rows[label]["values"].split(";")] == e["values"]
        assert f"{mean * 100:.2f} ± {std * 100:.2f}" in md
    assert "![tradeoff](plots/tradeoff.png)" in md and "mean over sent" in md


def test_html_embeds_the_png_files(compared, tmp_path):
    page = (compared.report_dir / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == len(PLOTS)
    for data, name in zip(images, PLOTS):
        assert base64.b64decode(data) == (compared.report_dir / "plots" / f"{name}.png").read_bytes()
    assert "lora-r8" in page
    # accuracy ties at chance on the tiny model (then nothing is bold); eval_loss differs, so one cell is best
    report = json.loads((compared.report_dir / "report.json").read_text())
    assert ("<td class='num best'>" in page) == (
        any(r["best"] for r in report["rows"]) or bool(report["average"]["best"])
    )
    # the tiny runs all answer one class (†, never best); as if they did not, one eval_loss cell is best
    runs = shutil.copytree(
        compared.report_dir.parent, tmp_path / "runs", ignore=shutil.ignore_patterns("model", "report")
    )
    for f in runs.rglob("metrics.json"):
        m = json.loads(f.read_text())
        m["eval"]["top_class_share"] = 0.5
        f.write_text(json.dumps(m))
    write_report([runs], tmp_path / "loss", metric="eval_loss")
    assert "<td class='num best'>" in (tmp_path / "loss" / "report.html").read_text()


def test_plots_are_real_pictures(compared):
    import matplotlib.image

    for name in PLOTS:
        path = compared.report_dir / "plots" / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert np.asarray(img)[..., :3].std() > 0.05  # not a blank canvas


def test_report_command_rebuilds_the_same_table(compared, tmp_path):
    root = compared.cells[0].output_dir.parents[2]
    # A moved-aside run and an earlier report must not count as runs.
    shutil.copytree(compared.cells[0].output_dir, root / "_stale" / "sent" / "lora-r2" / "seed0-abc")
    assert main(["report", str(root), "--out", str(tmp_path / "rep"), "--title", "again"]) == 0
    again = json.loads((tmp_path / "rep" / "report.json").read_text())
    first = json.loads((compared.report_dir / "report.json").read_text())
    assert [(r["method"], r["values"]) for r in again["rows"]] == [(r["method"], r["values"]) for r in first["rows"]]
    assert again["title"] == "again"


def test_runs_without_compare_labels_are_told_apart_by_params(compared, tmp_path):
    for c in compared.cells:
        shutil.copytree(
            c.output_dir, tmp_path / c.name.replace("/", "-"), ignore=shutil.ignore_patterns("cell.json", "model")
        )
    labels = sorted({r.method for r in load_runs([tmp_path])})
    assert labels == ["lora(r=2,train.lr=0.02)", "lora(r=8,train.lr=0.03)"]  # lora-r8 also overrides train.lr
    assert {r.task for r in load_runs([tmp_path])} == {"text-classification"}


def _plain_copy(cell, dest, **changes):
    """A copy of a compare cell's run dir without its compare label, with recipe keys changed (dotted)."""
    shutil.copytree(cell.output_dir, dest, ignore=shutil.ignore_patterns("cell.json", "model", "checkpoints"))
    recipe = yaml.safe_load((dest / "recipe.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = recipe
        for k in parents:
            node = node[k]
        node[last] = value
    (dest / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return dest


def test_plain_runs_of_one_task_that_differ_in_a_setting_are_labelled_by_it(compared, tmp_path):
    one = compared.cells[0]
    _plain_copy(one, tmp_path / "a", train__log_every=1, task__params__data_dir="/elsewhere")  # neither is a difference
    _plain_copy(one, tmp_path / "b", train__lr=0.5, output_dir="/moved")
    # another task's own recipe may differ (max_length) without splitting the method across tasks
    _plain_copy(one, tmp_path / "c", task__name="other/task", data__max_length=64)
    runs = {r.path.name: r for r in load_runs([tmp_path])}
    assert runs["a"].method == "lora(train.lr=0.02)" and runs["b"].method == "lora(train.lr=0.5)"
    assert runs["c"].method == "lora(train.lr=0.02)" and runs["c"].task == "task"
    table = json.loads((write_report([tmp_path], tmp_path / "rep") / "report.json").read_text())
    assert {(r["task"], r["method"]) for r in table["rows"]} == {
        ("text-classification", "lora(train.lr=0.02)"),
        ("text-classification", "lora(train.lr=0.5)"),
        ("task", "lora(train.lr=0.02)"),
    }
    assert table["average"]["tasks"] == ["text-classification"] and table["average"]["excluded_tasks"] == ["task"]


def test_the_same_run_twice_is_an_error(compared, tmp_path):
    one = compared.cells[0].output_dir
    shutil.copytree(one, tmp_path / "copy", ignore=shutil.ignore_patterns("model"))
    with pytest.raises(PeftkitError, match="would count twice"):
        write_report([one, tmp_path / "copy"], tmp_path / "rep")


def test_unfinished_runs_are_skipped_and_bad_paths_named(compared, tmp_path):
    d = tmp_path / "half"
    shutil.copytree(compared.cells[0].output_dir, d, ignore=shutil.ignore_patterns("model"))
    m = json.loads((d / "metrics.json").read_text())
    del m["final"]
    (d / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(PeftkitError, match="no finished runs"):
        load_runs([d])
    with pytest.raises(PeftkitError, match="nope: not a run dir"):
        load_runs([tmp_path / "nope"])


def _row(task: str, method: str, values: list[float]) -> Row:
    return Row(task, method, method, "accuracy", list(range(len(values))), values, 1, 10, 10.0, 0, 0, 0, None)


def test_clue_average_uses_only_tasks_every_method_has():
    rows = [
        _row("afqmc", "lora", [0.70, 0.72]),
        _row("afqmc", "full", [0.74]),
        _row("tnews", "lora", [0.50]),
        _row("tnews", "full", [0.54, 0.56]),
        _row("wsc", "lora", [0.60]),
    ]  # full has no wsc result
    avg = clue_average(rows)
    assert avg["tasks"] == ["afqmc", "tnews"] and avg["excluded_tasks"] == ["wsc"]
    assert avg["by_method"] == pytest.approx({"lora": (0.71 + 0.50) / 2, "full": (0.74 + 0.55) / 2})
    assert avg["best"] == ["full"]


def test_no_best_average_when_methods_tie_only_one_ran_or_it_collapsed():
    tie = [_row("afqmc", "lora", [0.69]), _row("afqmc", "ia3", [0.69])]
    assert clue_average(tie)["best"] == [] and clue_average(tie[:1])["best"] == []
    high, low = _row("afqmc", "ia3", [0.70]), _row("afqmc", "lora", [0.60])
    high.collapsed = True  # the higher average holds a collapsed cell: the other method is best
    avg = clue_average([high, low])
    assert avg["best"] == ["lora"] and avg["collapsed"] == ["ia3"]
    low.collapsed = True
    assert clue_average([high, low])["best"] == []


def test_report_of_a_saved_grid_file_matches_its_yaml(compared):
    """The compare file's title reaches the report (the report is built from the grid's own cells)."""
    assert (compared.report_dir / "report.md").read_text().startswith("# tiny grid\n")
    assert yaml.safe_load((compared.cells[0].output_dir / "recipe.yaml").read_text())["train"]["seed"] == 0


def test_best_marks_skip_ties_single_methods_and_collapsed_runs():
    from pathlib import Path

    from peftkit.compare.report.runs import RunRecord
    from peftkit.compare.report.tables import summarize

    def rec(task, method, acc, share):
        metrics = {
            "final": {"accuracy": acc},
            "eval": {"top_class_share": share},
            "params": {"trainable": 1, "total": 10, "percent": 10.0},
            "train": {},
            "memory": {},
        }
        return RunRecord(
            Path(f"/r/{task}/{method}"), task, method, 0, {"method": {"name": method}, "task": {"name": task}}, metrics
        )

    rows = summarize(
        [
            rec("tie", "a", 0.69, 1.0),
            rec("tie", "b", 0.69, 1.0),  # both at the prior
            rec("one", "a", 0.80, 0.5),  # nothing to compare with
            rec("mix", "a", 0.70, 1.0),
            rec("mix", "b", 0.60, 0.6),
            rec("mix", "c", 0.55, 0.7),
        ]
    )
    marks = {(r.task, r.method): (r.best, r.collapsed) for r in rows}
    assert marks == {
        ("tie", "a"): (False, True),
        ("tie", "b"): (False, True),
        ("one", "a"): (False, False),
        ("mix", "a"): (False, True),
        ("mix", "b"): (True, False),
        ("mix", "c"): (False, False),
    }


def test_collapsed_runs_warn_in_log_and_metrics(compared):
    """Two steps on the tiny model leave it answering one class: the run says so instead of reporting chance
    accuracy silently."""
    shares = []
    for c in compared.cells:
        m = json.loads((c.output_dir / "metrics.json").read_text())
        share = m["eval"]["top_class_share"]
        shares.append(share)
        flagged = any("collapsed to one class" in w for w in m.get("warnings", []))
        assert flagged == (share >= 0.99)
        assert flagged == ("collapsed to one class" in (c.output_dir / "train.log").read_text())
    assert max(shares) >= 0.99  # the check above saw a collapsed run


def test_runs_under_one_compare_label_with_different_settings_are_not_pooled_as_seeds(compared, tmp_path):
    """Two grids (or a grid whose method changed while only some tasks reran) reuse a label: the label
    gains the setting that differs, instead of averaging r=2 and r=16 as if they were seeds."""
    one = next(c for c in compared.cells if c.method == "lora-r2" and c.seed == 0)
    copy = shutil.copytree(
        one.output_dir, tmp_path / "other-grid" / "r16", ignore=shutil.ignore_patterns("model", "checkpoints")
    )
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    recipe["method"]["params"]["r"] = 16
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    cell = json.loads((copy / "cell.json").read_text())
    (copy / "cell.json").write_text(json.dumps({**cell, "seed": 7}))
    runs = load_runs([compared.report_dir.parent, tmp_path / "other-grid"])
    labels = {(r.method, r.seed) for r in runs}
    assert ("lora-r2(r=16)", 7) in labels and ("lora-r2(r=2)", 0) in labels and ("lora-r2(r=2)", 1) in labels
    assert {r.method for r in runs if r.method.startswith("lora-r8")} == {"lora-r8"}  # nothing differs there


def test_settings_that_vary_under_one_label_are_shown_as_varying(compared, tmp_path):
    from peftkit.compare.report.settings import settings_of

    runs = load_runs([compared.report_dir.parent])
    one = [r for r in runs if r.method == "lora-r8"]
    one[0].metrics = {**one[0].metrics, "lr": 0.5}
    got = settings_of(one)["methods"]["lora-r8"]
    assert got["params"]["r"] == 8 and str(got["lr"]).startswith("varies: ")


def test_bar_marks_best_and_collapsed_cells():
    from peftkit.compare.report.plots import _bar_values

    good, gone = _row("afqmc", "lora", [0.70]), _row("afqmc", "ia3", [0.69])
    good.best, gone.collapsed = True, True
    avg = clue_average([good, gone])
    assert [v[3] for v in _bar_values([good, gone], avg, ["afqmc", "average"], "lora")] == ["★", "★"]
    assert [v[3] for v in _bar_values([good, gone], avg, ["afqmc", "average"], "ia3")] == ["†", "†"]


def test_bars_show_an_average_only_over_several_tasks():
    from peftkit.compare.report.plots import bar_groups

    one = [_row("tnews", "lora", [0.55]), _row("tnews", "ia3", [0.54])]
    assert bar_groups(one, clue_average(one)) == ["tnews"]  # its average would repeat the task's bars
    two = [*one, _row("afqmc", "lora", [0.70])]
    assert bar_groups(two, clue_average(two)) == ["tnews", "afqmc", "average"]


def test_no_curves_plot_for_runs_evaluated_once(compared, tmp_path):
    from peftkit.compare.report.plots import draw_all, has_curves
    from peftkit.compare.report.tables import summarize

    runs = load_runs([compared.report_dir.parent])
    assert has_curves(runs)  # the tiny grid evaluates every step
    for r in runs:
        r.metrics = {**r.metrics, "history": (r.metrics.get("history") or [])[-1:]}
    assert not has_curves(runs)  # one evaluation a run (one epoch, eval.every: epoch): a dot, not a curve
    plots = shutil.copytree(compared.report_dir / "plots", tmp_path / "plots")  # the shared report stays as it is
    assert (plots / "curves.png").is_file()
    rows = summarize(runs)
    drawn = draw_all(runs, rows, clue_average(rows), plots)
    assert "curves" not in drawn and not (plots / "curves.png").exists()  # not left over from the last report


def test_settings_say_max_steps_ended_the_runs_not_epochs(compared, tmp_path):
    """The grid sets train.max_steps=3 and leaves train.epochs at its default 3: the runs stopped a quarter of the
    way through their first epoch, so the Settings must not say they trained 3 epochs."""
    from peftkit.compare.report.settings import settings_of

    recorded = {json.loads((c.output_dir / "metrics.json").read_text())["train"]["epochs"] for c in compared.cells}
    assert len(recorded) == 1 and next(iter(recorded)) < 1  # what the runs really did: 3 steps, under one epoch
    got = settings_of(load_runs([compared.report_dir.parent]))
    assert got["common"]["train.max_steps"] == 3
    assert got["common"]["train.epochs"].startswith("not used (train.max_steps overrides it")
    assert got["tasks"]["sent"]["epochs_trained"] == next(iter(recorded))
    md = (compared.report_dir / "report.md").read_text()
    assert "- `train.epochs`: 3.0" not in md and "- `train.epochs`: not used" in md
    assert f"steps: 3, epochs trained: {next(iter(recorded))})" in md
    # Without max_steps the recipe's epochs is the run's length again; a metrics.json without train.epochs
    # (written by an older peftkit) gives steps / steps_per_epoch.
    plain = _plain_copy(compared.cells[0], tmp_path / "epochs", train__max_steps=None, train__epochs=1.0)
    m = json.loads((plain / "metrics.json").read_text())
    del m["train"]["epochs"]
    m["train"]["steps"] = m["steps_per_epoch"]
    (plain / "metrics.json").write_text(json.dumps(m))
    got = settings_of(load_runs([plain]))
    assert got["common"]["train.epochs"] == 1.0 and got["common"]["train.max_steps"] is None
    assert got["tasks"]["text-classification"]["epochs_trained"] == 1.0


def test_tradeoff_names_stay_readable_when_methods_tie_or_sit_close(tmp_path, monkeypatch):
    """The measured AFQMC panel (every method at 66.50%, ia3 and bitfit 0.15% and 0.17% apart) drew names over
    each other; methods tied on both axes drew two names on one spot."""
    from matplotlib.text import Text

    from peftkit.compare.report import plots as report_plots

    def row(task, method, pct, acc):
        r = _row(task, method, [acc])
        r.trainable_percent = pct
        return r

    close = [
        row("afqmc", m, p, 0.665)
        for m, p in [
            ("lora", 0.686),
            ("adalora", 0.964),
            ("adapters", 0.318),
            ("full", 100.0),
            ("ia3", 0.150),
            ("bitfit", 0.170),
        ]
    ]
    tied = [
        row("tie", "lora", 0.69, 0.70),
        row("tie", "lora-b", 0.69, 0.70),
        row("tie", "ia3", 0.15, 0.70),
        row("tie", "full", 100.0, 0.71),
    ]
    panels = []

    def save(fig, path, layout=True):  # measure what is saved, as it is saved
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            for a in ax.texts:
                a.update_positions(renderer)
            labels = [
                (a.get_text(), a.xy, Text.get_window_extent(a, renderer)) for a in ax.texts
            ]  # the text, not its line
            panels.append((ax, ax.get_window_extent(renderer), labels))
        return real_save(fig, path, layout)

    real_save = report_plots._save
    monkeypatch.setattr(report_plots, "_save", save)
    path = report_plots.tradeoff(close + tied, tmp_path / "tradeoff.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    want = {
        "afqmc": {m.method: (m.trainable_percent, 66.5) for m in close},
        "tie": {"lora, lora-b": (0.69, 70.0), "ia3": (0.15, 70.0), "full": (100.0, 71.0)},
    }
    for ax, frame, labels in panels:
        points = want[ax.get_title()]
        assert {t: pytest.approx(xy) for t, xy, _ in labels} == points  # one name per spot, at its own point
        boxes = [box for *_, box in labels]
        for i, (text, _, box) in enumerate(labels):
            assert not any(box.overlaps(b) for b in boxes[i + 1 :]), f"{text!r} overlaps another name"
            assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), f"{text!r} outside its panel"
            for other, xy in points.items():  # a name never covers another method's point
                sx, sy = ax.transData.transform(xy)
                assert other == text or not (box.x0 < sx < box.x1 and box.y0 < sy < box.y1), f"{text!r} covers {other}"


def test_report_compares_the_labelled_test_split_on_request(compared, tmp_path, capsys):
    """`peftkit report --split test`: each run's metrics.json `test` section, runs without one skipped by name."""
    runs = tmp_path / "runs"
    shutil.copytree(compared.cells[0].output_dir.parents[2], runs, ignore=shutil.ignore_patterns("report"))
    dirs = find_run_dirs([runs])  # what a report reads (earlier tests may have left a _stale run beside them)
    scored = {}
    for i, d in enumerate(dirs[:-1]):  # the last run scored no test split
        m = json.loads((d / "metrics.json").read_text())
        m["test"] = {"accuracy": 0.5 + 0.1 * i, "eval_loss": 1.0 - 0.1 * i}
        (d / "metrics.json").write_text(json.dumps(m))
        scored[d] = m["test"]["accuracy"]
    assert main(["report", str(runs), "--split", "test", "--out", str(tmp_path / "rep")]) == 0
    assert f"{dirs[-1]}: skipped, no test metrics" in capsys.readouterr().err
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["settings"]["split"] == "test"
    got = {v for row in report["rows"] for v in row["values"]}
    assert got == set(scored.values())  # the test numbers, not the dev ones
    assert "held-out test-set metric" in (tmp_path / "rep" / "report.md").read_text()
    dev = json.loads((write_report([runs], tmp_path / "dev-rep") / "report.json").read_text())
    assert sum(len(r["values"]) for r in dev["rows"]) == len(dirs) and dev["settings"]["split"] == "dev"


def test_report_on_the_test_split_without_scored_runs_says_how_to_get_them(compared, tmp_path):
    with pytest.raises(PeftkitError, match=r"no finished runs \(metrics.json with test \(eval.predict: true"):
        load_runs([compared.cells[0].output_dir.parents[2]], split="test")
    with pytest.raises(PeftkitError, match="split 'train': choose one of dev, test"):
        load_runs([compared.cells[0].output_dir], split="train")


def test_t_intervals_and_which_methods_the_seeds_cannot_separate():
    from peftkit.compare.report.sections import significance_lines
    from peftkit.compare.report.stats import not_separated, t_interval

    lo, hi = t_interval([0.70, 0.72, 0.74])
    half = 4.303 * 0.02 / 3**0.5  # t(0.975, 2) · s / √n
    assert (lo, hi) == (pytest.approx(0.72 - half), pytest.approx(0.72 + half))
    assert t_interval([0.7]) is None
    best, far, near = (
        _row("t", "a", [0.80, 0.81, 0.82]),
        _row("t", "b", [0.70, 0.72, 0.74]),
        _row("t", "c", [0.76, 0.80, 0.84]),
    )
    best.best = True
    assert not_separated([best, far, near]) == {"t": ["c"]}
    lines = significance_lines([best, far, near])
    assert "Student t-interval" in lines[0]
    assert lines[1] == "t: a has the best mean, but c is not separated from it (95% t-intervals overlap)."
    assert "separated from every other method" in significance_lines([best, far])[1]
    one = _row("u", "a", [0.9])
    one.best = True
    assert "one seed there is no interval" in significance_lines([one, _row("u", "b", [0.8])])[1]


def test_macro_f1_stands_beside_accuracy_where_the_two_part():
    from peftkit.compare.report.sections import summary_table
    from peftkit.compare.report.tables import shows_f1

    skewed = [_row("afqmc", "lora", [0.69, 0.70]), _row("afqmc", "full", [0.72, 0.74])]
    skewed[0].f1, skewed[1].f1 = [0.41, 0.42], [0.60, 0.66]  # majority-class answers: accuracy flatters
    even = [_row("tnews", "lora", [0.50, 0.52]), _row("tnews", "full", [0.55, 0.53])]
    even[0].f1, even[1].f1 = [0.49, 0.51], [0.54, 0.52]
    rows = skewed + even
    assert shows_f1(rows, "afqmc") and not shows_f1(rows, "tnews")
    header, body = summary_table(rows, clue_average(rows))
    assert header[3:6] == ["afqmc (accuracy)", "afqmc (macro-F1)", "tnews (accuracy)"]
    assert body[0][4][0] == "41.50 ± 0.71"  # lora's macro-F1 on afqmc, ×100, mean ± std


def test_a_fraction_s_interval_is_shown_within_0_and_100():
    from peftkit.compare.report.sections import detail_table

    header, body = detail_table([_row("t", "a", [0.50, 0.98])])  # two seeds far apart: t = 12.7
    assert body[0][header.index("95% CI")][0] == "0.00 – 100.00"


@pytest.mark.parametrize(
    ("split", "on_test", "says"),
    [
        ("selection", False, "the dev numbers below did not choose the values"),
        ("dev", False, "the dev numbers below also chose the values and flatter them a little"),
        ("dev", True, "never by the test split, so the test numbers below did not choose the values"),
    ],
)
def test_the_report_says_whether_the_split_it_shows_chose_the_searched_values(split, on_test, says):
    """A few-shot grid searches on dev and reports test: its report must not call its test numbers flattered."""
    from pathlib import Path

    from peftkit.compare.report.runs import SearchRecord
    from peftkit.compare.report.sections import search_note

    record = SearchRecord(
        "eprstmt", "lora", {"train.lr": [1e-3]}, split, 0.1, 0, "accuracy", "maximize", "grid", [], None, True, Path()
    )
    (line,) = search_note([record], on_test)
    assert says in line and ("flatter" in line) == (split == "dev" and not on_test)
