"""The ``multiple-choice`` task on your own jsonl files: fields, the two label forms, errors that name the
file and line, the task conformance suite, and a tiny BERT that learns to pick the right choice."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from peftkit.errors import DataError, RecipeError
from peftkit.plugin.registry import get_registry

ROW = {
    "id": "q1",
    "text": "the day was fine",
    "question": "how was it?",
    "choices": ["bad", "good", "sad"],
    "label": "good",
}


@pytest.fixture(scope="module")
def task():
    return get_registry().tasks["multiple-choice"]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def load(task, path: Path, split: str = "train", **params):
    p = task.params_model.model_validate(
        {"train_file": str(path), "num_choices": 3, **params, **({"test_file": str(path)} if split == "test" else {})}
    )
    return task.load_split(p, split), p


def test_string_labels_map_to_positions_and_numbers_are_positions(task, tmp_path):
    rows = [
        ROW,
        {**ROW, "label": 2},
        {**ROW, "choices": ["一", "二", "三"], "label": "三"},
        {**ROW, "label": 0},
        {**ROW, "choices": ["2", "1", "0"], "label": "1"},
    ]  # a string is always a choice's text, never a position
    examples, p = load(task, write(tmp_path / "train.jsonl", rows))
    assert [e.label for e in examples] == [1, 2, 2, 0, 1]
    assert task.label_names(p) == ["0", "1", "2"] and task.head == "multiple-choice"
    first = examples[0]
    assert (first.text, first.text_pair, first.id, first.choices) == (
        "the day was fine",
        None,
        0,
        ["bad", "good", "sad"],
    )


def test_the_question_goes_in_front_of_each_choice_and_predictions_name_the_bare_choice(task, tmp_path):
    path = write(tmp_path / "test.jsonl", [{k: v for k, v in ROW.items() if k != "label"}])
    (ex,), p = load(task, path, "test", question_field="question", id_field="id")
    assert ex.label is None and ex.id == "q1" and ex.text == "the day was fine"
    assert ex.choices == ["how was it? bad", "how was it? good", "how was it? sad"]
    assert task.format_prediction(ex, 2, p) == {"id": "q1", "label": 2, "choice": "sad"}
    assert task.prediction_file(p) == "test_predictions.jsonl"


def test_without_a_passage_the_choices_stand_alone(task, tmp_path):
    rows = [{"choices": ["the day was bad", "the day was good", "the day was sad"], "label": 1}]
    (ex,), _ = load(task, write(tmp_path / "cloze.jsonl", rows), text_field=None)
    assert ex.text == "" and ex.choices == rows[0]["choices"] and ex.label == 1


def test_accuracy_is_the_only_metric(task):
    import numpy as np

    assert task.compute_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])) == {"accuracy": pytest.approx(0.75)}


@pytest.mark.parametrize(
    "change, error",
    [
        (
            {"choices": ["bad", "good"], "label": 0},
            "bad.jsonl:2: 2 choices, but task.params.num_choices is 3; every row needs exactly 3: pad a shorter row with "
            "choices that are never right",
        ),
        (
            {"label": "great"},
            "bad.jsonl:2: label 'great' is not one of the row's choices ('bad', 'good', 'sad'); give the "
            "right choice's text exactly, or its position from 0",
        ),
        ({"label": "1"}, 'if it is a position, write it as a JSON number (1, not "1")'),
        (
            {"label": 3},
            "bad.jsonl:2: label 3 is not a choice position: positions run 0 … 2 (from 0; subtract 1 from 1-based",
        ),
        ({"label": -1}, "bad.jsonl:2: label -1 is not a choice position"),
        (
            {"label": True},
            "bad.jsonl:2: field 'label' must be the answer's position (a number) or the right choice's text, got bool",
        ),
        ({"choices": ["a", "a", "b"], "label": "a"}, "bad.jsonl:2: label 'a' is choice 0 and 1: the same text twice"),
        ({"choices": "bad|good|sad"}, "bad.jsonl:2: field 'choices' must be a list of choices, got str 'bad|good|sad'"),
        ({"choices": ["bad", None, "sad"]}, "bad.jsonl:2: choice 1 of 'choices' must be a string, got NoneType"),
        ({"text": ["a", "b"]}, "bad.jsonl:2: field 'text' must be a string, got list"),
        ({"label": None}, "bad.jsonl:2: row has no field 'label' (fields: id, text, question, choices, label)"),
    ],
)
def test_rows_that_do_not_fit_are_named_by_file_and_line(task, tmp_path, change, error):
    path = write(tmp_path / "bad.jsonl", [ROW, {**ROW, **change}])
    with pytest.raises(DataError) as info:
        load(task, path)
    assert error in str(info.value)


def test_a_missing_text_field_is_named_with_the_fields_there_are(task, tmp_path):
    path = write(tmp_path / "rows.jsonl", [{"passage": "p", "choices": ["a", "b", "c"], "label": 0}])
    with pytest.raises(DataError, match=r"rows.jsonl:1: row has no field 'text' \(fields: passage, choices, label\)"):
        load(task, path)
    (ex,), _ = load(task, path, text_field="passage")
    assert ex.text == "p"


def test_a_test_row_without_its_id_is_named(task, tmp_path):
    path = write(
        tmp_path / "test.jsonl",
        [{"id": 7, "text": "t", "choices": ["a", "b", "c"]}, {"text": "t", "choices": ["a", "b", "c"]}],
    )
    with pytest.raises(DataError, match=r"test.jsonl:2: row has no id field 'id' \(fields: text, choices\)"):
        load(task, path, "test", id_field="id")


def test_recipe_problems_name_the_key(tiny_bert, tmp_path):
    from peftkit.recipe import data_problems, validate

    recipe = {
        "model": {"source": f"local:{tiny_bert}"},
        "method": {"name": "lora"},
        "output_dir": str(tmp_path / "o"),
        "task": {"name": "multiple-choice", "params": {"train_file": str(tmp_path / "exam.csv")}},
    }
    with pytest.raises(RecipeError) as info:
        validate(recipe)
    text = str(info.value)
    assert "task.params.num_choices" in text  # required: the label space is fixed by the recipe, not by a row
    assert (
        "task.params.train_file" in text
        and "multiple-choice reads jsonl, not csv/tsv: convert the file" in text
        and "got '" in text
    )
    recipe["task"]["params"] = {"train_file": str(tmp_path / "train.jsonl"), "num_choices": 4}
    assert data_problems(validate(recipe)) == [
        f"task.params.train_file: data file {tmp_path / 'train.jsonl'} does not exist"
    ]


def rows(n: int, seed: int, choices: int = 4) -> list[dict]:
    """Learnable rows in the tiny BERT's vocabulary: the one positive word among the choices is the answer;
    every other row gives its label as the answer's text, the rest as its position."""
    from peftkit.kit.tiny import FILLER, NEGATIVE, POSITIVE

    rng = random.Random(seed)
    out = []
    for i in range(n):
        wrong = rng.sample(NEGATIVE, choices - 1)
        answer = rng.randrange(choices)
        options = wrong[:answer] + [rng.choice(POSITIVE)] + wrong[answer:]
        out.append(
            {
                "qid": f"r{seed}-{i}",
                "passage": " ".join(rng.sample(FILLER, 4)),
                "question": "which was it ?",
                "options": options,
                "answer": options[answer] if i % 2 else answer,
            }
        )
    return out


def files(folder: Path) -> dict[str, str]:
    write(folder / "train.jsonl", rows(96, 1))
    write(folder / "dev.jsonl", rows(40, 2))
    write(folder / "test.jsonl", rows(24, 3))
    return {
        "train_file": str(folder / "train.jsonl"),
        "dev_file": str(folder / "dev.jsonl"),
        "test_file": str(folder / "test.jsonl"),
        "num_choices": 4,
        "text_field": "passage",
        "question_field": "question",
        "choices_field": "options",
        "label_field": "answer",
        "id_field": "qid",
    }


def test_the_task_passes_the_conformance_suite(tmp_path):
    from peftkit.kit.conformance import check_task

    assert check_task("multiple-choice", files(tmp_path)) == {"train": 96, "dev": 40, "test": 24}


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend on a shared CPU
    yield
    torch.set_num_threads(before)


def test_a_tiny_bert_learns_to_pick_and_writes_predictions(tiny_bert, tmp_path, one_thread):
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    params = files(tmp_path / "data")
    recipe = validate(
        {
            "model": {"source": f"local:{tiny_bert}"},
            "method": {"name": "lora", "params": {"r": 4}},
            "task": {"name": "multiple-choice", "params": params},
            "data": {"max_length": 24},
            "train": {"epochs": 6, "batch_size": 8, "seed": 0, "lr": 2e-2},
            "eval": {"predict": True},
            "output_dir": str(tmp_path / "run"),
        }
    )
    summary = run(recipe)
    # chance is 1/4; 1.0 on dev and test with seeds 0-4: the head learned to compare the choices
    assert summary["final"]["accuracy"] >= 0.85
    lines = [json.loads(x) for x in Path(summary["predictions"]).read_text(encoding="utf-8").splitlines()]
    test = rows(24, 3)
    assert Path(summary["predictions"]).name == "test_predictions.jsonl"
    assert [x["id"] for x in lines] == [r["qid"] for r in test]
    assert all(
        set(x) == {"id", "label", "choice"} and x["choice"] == r["options"][x["label"]] for x, r in zip(lines, test)
    )
    right = sum(
        x["choice"] == (r["answer"] if isinstance(r["answer"], str) else r["options"][r["answer"]])
        for x, r in zip(lines, test)
    )
    assert right / len(test) >= 0.85
