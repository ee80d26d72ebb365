"""A task plugin that breaks its contract gets an error naming the task, split and row (not a traceback
from peftkit's internals); NaN metrics never win and never reach metrics.json; hooks run in the
documented order."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from peftkit import Example, hookimpl
from peftkit.build.setup import checked_examples
from peftkit.errors import DataError, RecipeError
from peftkit.kit.tiny import tiny_recipe
from peftkit.plugin.registry import build_registry
from peftkit.recipe import validate
from peftkit.run_dir import write_json
from peftkit.train.best import better as _better
from peftkit.train.loop import run


def _gen():
    yield Example("a", label=0, id="r0")
    yield Example("b", label=1, id="r1")


@pytest.mark.parametrize(
    "raw, split, error",
    [
        ([("a", 0)], "train", "task 't', train split: row 0 is a tuple, not a peftkit.Example"),
        (Example("a", label=0), "train", "load_split returned Example, not a list of peftkit.Example"),
        ([Example(None, label=0, id="r0")], "train", "row 0 (id 'r0'): text is NoneType None, not a string"),
        ([Example("a", text_pair=3, label=0)], "dev", "row 0: text_pair is int 3, not a string"),
        (
            [Example("a", label="pos", id=7)],
            "train",
            "row 0 (id 7): label is str 'pos', not a label id (an int from 0 to 1)",
        ),
        (
            [Example("a", label=0), Example("b"), Example("c")],
            "dev",
            "dev split: row 1 has no label, nor do 1 more of its 3 rows: training and evaluation need a label on every row",
        ),
        (
            [Example("a", label=2, id="x")],
            "train",
            "train split: label id 2 (row id 'x') is outside the task's 2 labels",
        ),
    ],
)
def test_bad_rows_name_task_split_and_row(raw, split, error):
    with pytest.raises(DataError) as info:
        checked_examples(raw, "t", split, 2)
    assert error in str(info.value)


def test_good_rows_pass_generators_are_read_once_and_test_rows_may_be_unlabelled():
    assert [e.id for e in checked_examples(_gen(), "t", "train", 2)] == ["r0", "r1"]
    rows = checked_examples([Example("a", label=np.int64(1)), Example("b")], "t", "test", 2)
    assert [e.label for e in rows] == [1, None]
    assert checked_examples([], "t", "test", 2) == []


class _NoOwnMetric:
    """The text-classification task, except that its compute_metrics leaves out its own metric."""

    def __init__(self, inner):
        self._inner = inner
        self.name = "acme/nometric"

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def compute_metrics(self, predictions, references):
        return {"f1": 0.5}


def test_a_task_without_its_own_metric_is_blamed_not_the_recipe(tiny_bert, tiny_data, tmp_path):
    base = build_registry()
    plugin = type(
        "P",
        (),
        {"peftkit_register_tasks": staticmethod(hookimpl(lambda: [_NoOwnMetric(base.tasks["text-classification"])]))},
    )()
    reg = build_registry(extra_plugins={"acme": plugin})
    data = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o")
    data["task"]["name"] = "acme/nometric"
    with pytest.raises(RecipeError) as info:
        validate(data, registry=reg)
    msg = str(info.value)
    assert (
        "task.name: task 'acme/nometric' keeps the best checkpoint by its main metric 'accuracy' (Task.metric)" in msg
    )
    assert "but its compute_metrics does not report it: reports f1; fix the task's plugin, or set eval.metric" in msg
    data["eval"] = {"metric": "f1"}
    validate(data, registry=reg)  # choosing a metric it reports is a way out


def test_nan_never_wins_and_is_null_in_json(tmp_path):
    assert _better(0.1, None) and _better(0.1, math.nan) and not _better(math.nan, 0.1) and not _better(0.5, 0.5)
    write_json(
        tmp_path / "m.json", {"a": math.nan, "b": [math.inf, np.float32(0.5)], "c": {"d": np.float64(-math.inf)}}
    )
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [None, 0.5], "c": {"d": None}}


def test_hooks_run_in_the_documented_order(tiny_bert, tiny_data, tmp_path):
    import gc
    import weakref

    calls, held = [], []

    class Recorder:
        @hookimpl
        def peftkit_on_train_begin(self, state):
            calls.append("train_begin")
            held.extend([weakref.ref(state.optimizer), weakref.ref(state.model)])

        @hookimpl
        def peftkit_on_eval(self, state, metrics):
            calls.append("eval")

        @hookimpl
        def peftkit_on_save(self, state, path):
            calls.append("save")

        @hookimpl
        def peftkit_on_train_end(self, state):
            calls.append("train_end")
            gc.collect()
            # the training model and optimizer are gone before the final evaluation loads the saved model
            assert state.optimizer is None and state.model is None
            assert [ref() for ref in held] == [None, None]

    reg = build_registry(extra_plugins={"recorder": Recorder()})
    run(validate(tiny_recipe(tiny_bert, tiny_data, tmp_path / "run", max_steps=2), registry=reg), registry=reg)
    assert calls[0] == "train_begin" and calls[-1] == "train_end"
    assert calls[1:3] == ["eval", "save"]  # the first evaluation is always a new best: on_eval, then on_save


def test_builtin_task_passes_the_task_conformance_suite(tiny_data):
    from peftkit.kit.conformance import check_task

    rows = check_task(
        "text-classification",
        {
            "train_file": str(tiny_data["train"]),
            "dev_file": str(tiny_data["dev"]),
            "test_file": str(tiny_data["test"]),
            "labels": ["neg", "pos"],
        },
    )
    assert rows == {"train": 96, "dev": 48, "test": 16}


class _Broken:
    """A small valid task; each test breaks one thing."""

    name, summary, metric, splits = "acme/broken", "t", "accuracy", ("train", "test")

    def __init__(self, **change):
        from pydantic import BaseModel

        self.params_model = type("NoParams", (BaseModel,), {})
        self.__dict__.update(change)

    def label_names(self, params):
        return ["a", "b"]

    def load_split(self, params, split):
        return [Example("x", label=0 if split == "train" else None, id="r0")]

    def compute_metrics(self, predictions, references):
        return {"accuracy": float((predictions == references).mean())}

    def prediction_file(self, params):
        return "p.jsonl"

    def format_prediction(self, example, label_id, params):
        return {"id": example.id, "label": label_id}


@pytest.mark.parametrize(
    "change, error",
    [
        ({}, None),
        ({"label_names": lambda p: ["a", "a"]}, "label_names() must be distinct strings"),
        (
            {"load_split": lambda p, s: [Example("x", label="a")]},
            "train split: row 0: label is str 'a', not a label id",
        ),
        ({"compute_metrics": lambda pr, r: {"acc": 1.0}}, "reports ['acc'], not the task's own metric 'accuracy'"),
        (
            {"compute_metrics": lambda pr, r: {"accuracy": float((pr != r).mean())}},
            "of a perfect prediction (0.0) is below",
        ),
        ({"prediction_file": lambda p: "out/p.jsonl"}, "prediction_file() must be a bare file name"),
        (
            {"format_prediction": lambda e, i, p: {"id": object()}},
            "format_prediction() must give a JSON-serialisable dict",
        ),
    ],
)
def test_task_conformance_names_what_is_broken(change, error):
    from peftkit.kit.conformance import ConformanceError, check_task

    task = _Broken(**change)
    if error is None:
        assert check_task(task) == {"train": 1, "test": 1}
        return
    with pytest.raises(ConformanceError) as info:
        check_task(task)
    assert str(info.value).startswith("task 'acme/broken': ") and error in str(info.value)
