"""CLUE / FewCLUE tasks: the data traps on small rows written here, then every real task folder end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import peftkit_plugins.clue as clue_plugin
from peftkit.errors import DataError, RecipeError
from peftkit.plugin.registry import get_registry
from peftkit_plugins.clue.specs import SPECS

CLUE_DIR = Path(os.environ.get("PEFTKIT_CLUE_DIR") or Path(__file__).parents[2] / ".." / "shared" / "data" / "clue")
TASKS = {spec.name: spec for spec in SPECS}


@pytest.fixture(scope="module")
def reg():
    return get_registry()


@pytest.fixture(scope="module")
def one_thread():
    """A tiny model gains nothing from intra-op threads, and on a loaded 2-core machine they made the
    tnews run 7x slower (65 s → 9 s measured), spinning while waiting for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write(folder: Path, name: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def load(reg, task: str, split: str, **params):
    t = reg.tasks[task]
    return t.load_split(t.params_model.model_validate(params), split)


# ---------------------------------------------------------------------------------------------- unit tests


def test_every_task_is_registered(reg):
    names = {n for n in reg.tasks if n.startswith(("clue/", "fewclue/"))}
    assert names == {
        "clue/afqmc",
        "clue/tnews",
        "clue/iflytek",
        "clue/cmnli",
        "clue/ocnli",
        "clue/cluewsc2020",
        "clue/csl",
        "fewclue/tnews",
        "fewclue/iflytek",
        "fewclue/ocnli",
        "fewclue/csl",
        "fewclue/cluewsc",
        "fewclue/eprstmt",
        "fewclue/bustm",
        "fewclue/csldcp",
        "fewclue/chid",
    }  # all nine FewCLUE tasks
    assert {n: reg.tasks[n].head for n in names if reg.tasks[n].head != "sequence-classification"} == {
        "fewclue/chid": "multiple-choice"
    }
    assert "ChID" in clue_plugin.__doc__


CHID_ROW = {
    "id": 5,
    "candidates": ["一", "二", "三", "四", "五", "六", "七"],
    "content": "前文#idiom#后文",
    "answer": 2,
}


def test_chid_fills_each_candidate_into_the_blank(reg, tmp_path):
    write(tmp_path, "train_few_all.json", [CHID_ROW])
    write(tmp_path, "test.json", [{k: v for k, v in CHID_ROW.items() if k != "answer"}])
    (ex,) = load(reg, "fewclue/chid", "train", data_dir=str(tmp_path))
    assert (ex.text, ex.text_pair, ex.label, ex.id) == ("", None, 2, 5)
    assert ex.choices == [f"前文{c}后文" for c in CHID_ROW["candidates"]]
    task = reg.tasks["fewclue/chid"]
    params = task.params_model(data_dir=str(tmp_path), train_split="train_2")
    (test,) = task.load_split(params, "test")
    assert test.label is None and task.format_prediction(test, 6, params) == {
        "id": 5,
        "answer": 6,
    }  # FewCLUE's chidf_predict
    assert task.prediction_file(params) == "chidf_predict_2.json"
    assert task.compute_metrics(np.array([1, 2, 3]), np.array([1, 2, 0])) == {"accuracy": pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    "change, error",
    [
        (
            {"content": "no blank here"},
            "train_few_all.json:1: `content` must hold the blank #idiom# once, found it 0 times",
        ),
        ({"content": "#idiom# twice #idiom#"}, "found it 2 times"),
        (
            {"candidates": ["一", "二"]},
            "train_few_all.json:1: `candidates` must be a list of 7 idioms, got ['一', '二']",
        ),
        ({"answer": 7}, "train_few_all.json:1: label '7' is not one of fewclue/chid's 7 labels (0, 1, 2, 3, 4, 5, 6)"),
    ],
)
def test_chid_rows_that_do_not_fit_the_format_are_named(reg, tmp_path, change, error):
    write(tmp_path, "train_few_all.json", [{**CHID_ROW, **change}])
    with pytest.raises(DataError) as info:
        load(reg, "fewclue/chid", "train", data_dir=str(tmp_path))
    assert error in str(info.value)


def _chid_rows(n: int, seed: int) -> list[dict]:
    """Learnable ChID-shaped rows in the tiny BERT's English vocabulary: the one positive word is the answer."""
    import random

    from peftkit.kit.tiny import FILLER, NEGATIVE, POSITIVE

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        wrong = rng.sample(NEGATIVE + ["the", "a", "day"], 6)
        answer = rng.randrange(7)
        candidates = wrong[:answer] + [rng.choice(POSITIVE)] + wrong[answer:]
        rows.append(
            {
                "id": i,
                "candidates": candidates,
                "answer": answer,
                "content": " ".join(rng.sample(FILLER, 3)) + " #idiom# " + rng.choice(FILLER),
            }
        )
    return rows


def test_chid_trains_a_multiple_choice_head_and_writes_its_submission(reg, tiny_bert, tmp_path, one_thread):
    from peftkit.evaluation.runs import predict_run
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    data = tmp_path / "chid"
    write(data, "train_few_all.json", _chid_rows(96, 1))
    write(data, "dev_few_all.json", _chid_rows(42, 2))
    write(data, "test.json", [{k: v for k, v in r.items() if k != "answer"} for r in _chid_rows(20, 3)])
    recipe = validate(
        {
            "model": {"source": f"local:{tiny_bert}"},
            "method": {"name": "lora", "params": {"r": 4}},
            "task": {"name": "fewclue/chid", "params": {"data_dir": str(data)}},
            "data": {"max_length": 16},
            "train": {"epochs": 6, "batch_size": 8, "seed": 0, "lr": 2e-2},
            "eval": {"predict": True},
            "output_dir": str(tmp_path / "run"),
        }
    )
    summary = run(recipe)
    assert summary["final"]["accuracy"] >= 0.6  # chance is 1/7: the head learned to compare the choices
    assert summary["eval"]["top_class_share"] < 0.5  # answers spread over the candidate positions
    lines = [json.loads(x) for x in Path(summary["predictions"]).read_text().splitlines()]
    assert Path(summary["predictions"]).name == "chidf_predict_all.json" and [x["id"] for x in lines] == list(range(20))
    assert all(set(x) == {"id", "answer"} and x["answer"] in range(7) for x in lines)
    again = predict_run(tmp_path / "run", registry=reg)
    assert [json.loads(x) for x in again.read_text().splitlines()] == lines  # the saved model reloads with its head


def test_label_spaces_follow_the_hub_class_label_order(reg):
    names = {
        n: reg.tasks[n].label_names(None)
        for n in ("clue/cluewsc2020", "clue/ocnli", "clue/cmnli", "clue/tnews", "clue/iflytek")
    }
    assert names["clue/cluewsc2020"] == ["true", "false"]  # true = 0 on the hub
    assert names["clue/ocnli"] == names["clue/cmnli"] == ["neutral", "entailment", "contradiction"]
    assert len(names["clue/tnews"]) == 15 and "105" not in names["clue/tnews"] and "111" not in names["clue/tnews"]
    assert names["clue/iflytek"] == [str(i) for i in range(119)]
    assert reg.tasks["fewclue/tnews"].label_names(None) == names["clue/tnews"]  # CLUE and FewCLUE ids agree


def test_string_and_integer_labels_map_to_the_same_ids(reg, tmp_path):
    write(
        tmp_path / "clue",
        "train.json",
        [{"label": "102", "label_desc": "news_entertainment", "sentence": "a", "keywords": ""}],
    )
    write(
        tmp_path / "few",
        "train_few_all.json",
        [{"label": 102, "label_desc": "news_entertainment", "sentence": "a", "id": 7}],
    )
    clue = load(reg, "clue/tnews", "train", data_dir=str(tmp_path / "clue"))
    few = load(reg, "fewclue/tnews", "train", data_dir=str(tmp_path / "few"))
    assert clue[0].label == few[0].label == 2  # "102" is the third code
    write(tmp_path / "ifly", "train_few_all.json", [{"label": 8, "label_des": "公共交通", "sentence": "b", "id": 0}])
    write(tmp_path / "iflyc", "train.json", [{"label": "8", "label_des": "公共交通", "sentence": "b"}])
    assert load(reg, "fewclue/iflytek", "train", data_dir=str(tmp_path / "ifly"))[0].label == 8
    assert load(reg, "clue/iflytek", "train", data_dir=str(tmp_path / "iflyc"))[0].label == 8


def test_no_gold_rows_are_dropped_before_the_cap(reg, tmp_path):
    labels = ["-", "entailment", "-", "neutral", "contradiction"]
    write(
        tmp_path,
        "train.json",
        [{"sentence1": f"p{i}", "sentence2": f"h{i}", "label": lab} for i, lab in enumerate(labels)],
    )
    full = load(reg, "clue/ocnli", "train", data_dir=str(tmp_path))
    assert [(e.text, e.label) for e in full] == [("p1", 1), ("p3", 0), ("p4", 2)]
    capped = load(reg, "clue/cmnli", "train", data_dir=str(tmp_path), max_train_samples=2)
    assert [e.text for e in capped] == ["p1", "p3"]


def test_ocnli_reads_train_50k_when_there_is_no_train_json(reg, tmp_path):
    write(tmp_path, "train.50k.json", [{"sentence1": "p", "sentence2": "h", "label": "neutral", "id": 0}])
    assert load(reg, "clue/ocnli", "train", data_dir=str(tmp_path))[0].label == 0


WSC_TEXT = "这时候放在床上枕头旁边的手机响了，现在它突然响了。"


@pytest.mark.parametrize(
    "span1, span2, expected",
    [
        (("手机", 12), ("它", 19), "这时候放在床上枕头旁边的_手机_响了，现在[它]突然响了。"),
        (("床", 5), ("它", 19), "这时候放在_床_上枕头旁边的手机响了，现在[它]突然响了。"),
        (("现在", 17), ("这时候", 0), "[这时候]放在床上枕头旁边的手机响了，_现在_它突然响了。"),  # span2 before span1
    ],
)
def test_wsc_marks_both_spans_at_their_character_offsets(reg, tmp_path, span1, span2, expected):
    target = {"span1_text": span1[0], "span1_index": span1[1], "span2_text": span2[0], "span2_index": span2[1]}
    write(tmp_path, "train.json", [{"target": target, "idx": 5, "label": "true", "text": WSC_TEXT}])
    (ex,) = load(reg, "clue/cluewsc2020", "train", data_dir=str(tmp_path))
    assert (ex.text, ex.text_pair, ex.label, ex.id) == (expected, None, 0, 5)


def test_wsc_index_that_misses_its_span_is_an_error(reg, tmp_path):
    target = {"span1_text": "手机", "span1_index": 11, "span2_text": "它", "span2_index": 19}
    write(tmp_path, "train.json", [{"target": target, "idx": 0, "label": "false", "text": WSC_TEXT}])
    with pytest.raises(DataError, match=r"train.json:1: target.span1_index=11 does not point at span1_text '手机'"):
        load(reg, "clue/cluewsc2020", "train", data_dir=str(tmp_path))


def test_csl_pairs_joined_keywords_with_the_abstract(reg, tmp_path):
    write(tmp_path, "train.json", [{"id": 3, "abst": "摘要内容", "keyword": ["水声学", "FFT"], "label": "1"}])
    write(tmp_path, "test.json", [{"id": 9, "abst": "另一个", "keyword": ["波束"]}])
    (ex,) = load(reg, "clue/csl", "train", data_dir=str(tmp_path))
    assert (ex.text, ex.text_pair, ex.label, ex.id) == (
        "水声学 FFT",
        "摘要内容",
        1,
        3,
    )  # joined as CLUE's CslProcessor does
    (test,) = load(reg, "clue/csl", "test", data_dir=str(tmp_path))
    assert (test.text, test.label, test.id) == ("波束", None, 9)


def test_subsets_never_change_label_ids(reg, tmp_path):
    rows = [{"id": i, "sentence": f"s{i}", "label": lab} for i, lab in enumerate(["Positive", "Negative", "Positive"])]
    write(tmp_path, "train_few_all.json", rows)
    task = reg.tasks["fewclue/eprstmt"]
    full = load(reg, "fewclue/eprstmt", "train", data_dir=str(tmp_path))
    one = load(reg, "fewclue/eprstmt", "train", data_dir=str(tmp_path), max_train_samples=1)
    assert [e.label for e in full] == [1, 0, 1] and [e.label for e in one] == [1]
    assert task.label_names(task.params_model(max_train_samples=1)) == ["Negative", "Positive"]


def test_unknown_label_names_file_line_and_choices(reg, tmp_path):
    write(
        tmp_path,
        "train.json",
        [{"sentence1": "a", "sentence2": "b", "label": "0"}, {"sentence1": "a", "sentence2": "b", "label": "2"}],
    )
    with pytest.raises(DataError, match=r"train.json:2: label '2' is not one of clue/afqmc's 2 labels \(0, 1\)"):
        load(reg, "clue/afqmc", "train", data_dir=str(tmp_path))


def test_test_rows_need_ids_and_predictions_use_the_task_vocabulary(reg, tmp_path):
    write(tmp_path, "test.json", [{"id": "0", "sentence": "x"}, {"id": "1", "sentence": "y"}])
    task = reg.tasks["fewclue/tnews"]
    params = task.params_model(data_dir=str(tmp_path))
    examples = task.load_split(params, "test")
    assert [(e.id, e.label) for e in examples] == [("0", None), ("1", None)]
    assert task.format_prediction(examples[0], 2, params) == {"id": "0", "label": "102"}
    wsc, epr = reg.tasks["clue/cluewsc2020"], reg.tasks["fewclue/eprstmt"]
    assert wsc.format_prediction(examples[1], 0, wsc.params_model())["label"] == "true"
    assert epr.format_prediction(examples[1], 1, epr.params_model())["label"] == "Positive"
    write(tmp_path / "noid", "test.json", [{"sentence1": "a", "sentence2": "b"}])
    with pytest.raises(DataError, match="test row has no `id`"):
        load(reg, "clue/afqmc", "test", data_dir=str(tmp_path / "noid"))


def test_prediction_file_names(reg, tmp_path, monkeypatch):
    monkeypatch.delenv("PEFTKIT_CLUE_DIR", raising=False)
    local = {"data_dir": str(tmp_path)}
    got = {n: reg.tasks[n].prediction_file(reg.tasks[n].params_model.model_validate(local)) for n in TASKS}
    assert got["clue/afqmc"] == "afqmc_predict.json" and got["clue/tnews"] == "tnews11_predict.json"
    assert got["clue/cluewsc2020"] == "cluewsc11_predict.json" and got["clue/ocnli"] == "ocnli_50k_predict.json"
    # FewCLUE names a submission by its training run (its fewclue_m_submit_examples): _0 ... _4, _all
    assert got["fewclue/tnews"] == "tnewsf_predict_all.json" and got["fewclue/eprstmt"] == "eprstmt_predict_all.json"
    few = reg.tasks["fewclue/cluewsc"]
    assert (
        few.prediction_file(few.params_model(data_dir=str(tmp_path), train_split="train_3"))
        == "cluewscf_predict_3.json"
    )
    hub = reg.tasks["clue/cluewsc2020"]
    assert hub.prediction_file(hub.params_model()) == "cluewsc10_predict.json"  # the hub's 2,574-row 1.0 test set
    wsc = reg.tasks["clue/cluewsc2020"]  # a local folder is named by the test set it holds
    row = {"id": 0, "text": "x", "target": {"span1_text": "x", "span1_index": 0, "span2_text": "x", "span2_index": 0}}
    write(tmp_path / "wsc10", "test.json", [row] * 2574)
    assert wsc.prediction_file(wsc.params_model(data_dir=str(tmp_path / "wsc10"))) == "cluewsc10_predict.json"
    write(tmp_path / "wsc11", "test.json", [row] * 290)
    assert wsc.prediction_file(wsc.params_model(data_dir=str(tmp_path / "wsc11"))) == "cluewsc11_predict.json"


def test_hub_offline_error_names_the_setting_and_the_local_alternative(reg, monkeypatch):
    import datasets

    monkeypatch.delenv("PEFTKIT_CLUE_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # offline even where a network exists
    with pytest.raises(DataError) as info:
        load(reg, "clue/afqmc", "dev")
    msg = str(info.value)
    assert (
        "clue/afqmc" in msg
        and "HF_DATASETS_OFFLINE" in msg
        and "task.params.data_dir" in msg
        and "PEFTKIT_CLUE_DIR" in msg
    )


def test_validate_warns_when_the_hub_is_the_source_but_switched_off(reg, monkeypatch):
    task = reg.tasks["clue/afqmc"]
    monkeypatch.delenv("PEFTKIT_CLUE_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert task.check_data(task.params_model()) == []  # with a network, the hub is a source
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ((key, msg),) = task.check_data(task.params_model())
    assert (
        key == "task.params.data_dir"
        and "reads the Hugging Face hub dataset clue/afqmc" in msg
        and "HF_HUB_OFFLINE" in msg
    )


def test_hub_rows_map_class_label_names_and_ids():
    import datasets

    from peftkit_plugins.clue.rows import to_example
    from peftkit_plugins.clue.sources import convert_hub

    span = {
        "span1_text": datasets.Value("string"),
        "span2_text": datasets.Value("string"),
        "span1_index": datasets.Value("int32"),
        "span2_index": datasets.Value("int32"),
    }
    feats = datasets.Features(
        {
            "idx": datasets.Value("int32"),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["true", "false"]),
            "target": span,
        }
    )
    target = {"span1_text": "床", "span1_index": 5, "span2_text": "它", "span2_index": 19}
    ds = datasets.Dataset.from_dict(
        {"idx": [4, 5], "text": [WSC_TEXT] * 2, "label": [1, -1], "target": [target] * 2}, features=feats
    )
    spec = TASKS["clue/cluewsc2020"]
    index = {lab: i for i, lab in enumerate(spec.labels)}
    rows = list(convert_hub(spec, ds, "hub"))
    train = to_example(spec, rows[0][2], "hub", 1, index, labelled=True)
    test = to_example(spec, rows[1][2], "hub", 2, index, labelled=False)
    assert (train.label, train.id, test.label, test.id) == (1, 4, None, 5) and "_床_" in train.text
    csl = datasets.Dataset.from_dict(
        {"idx": [0], "corpus_id": [2415], "abst": ["摘要"], "label": [-1], "keyword": [["风神"]]},
        features=datasets.Features(
            {
                "idx": datasets.Value("int32"),
                "corpus_id": datasets.Value("int32"),
                "abst": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["0", "1"]),
                "keyword": datasets.Sequence(datasets.Value("string")),
            }
        ),
    )
    (row,) = [r for _, _, r in convert_hub(TASKS["clue/csl"], csl, "hub")]
    assert row == {
        "abst": "摘要",
        "keyword": ["风神"],
        "id": 2415,
    }  # csl submissions use the file id, not the row number


def test_folders_come_from_the_environment_variable(reg, tmp_path, monkeypatch):
    write(
        tmp_path / "fewclue" / "bustm",
        "train_few_all.json",
        [{"id": 1, "sentence1": "a", "sentence2": "b", "label": "1"}],
    )
    monkeypatch.setenv("PEFTKIT_CLUE_DIR", str(tmp_path))
    assert load(reg, "fewclue/bustm", "train")[0].label == 1
    with pytest.raises(DataError, match=r"data folder .*/afqmc \(from PEFTKIT_CLUE_DIR="):
        load(reg, "clue/afqmc", "train")
    monkeypatch.delenv("PEFTKIT_CLUE_DIR")
    with pytest.raises(DataError, match="FewCLUE is not in the Hugging Face `clue` dataset"):
        load(reg, "fewclue/bustm", "train")
    with pytest.raises(DataError, match="source is 'local' but neither"):
        load(reg, "clue/afqmc", "train", source="local")


def test_fewclue_split_choice_and_label_file_check(reg, tmp_path):
    write(tmp_path, "train_0.json", [{"id": 0, "sentence": "t0", "label": "Negative"}])
    write(tmp_path, "test_public.json", [{"id": 1, "sentence": "tp", "label": "Positive"}])
    assert load(reg, "fewclue/eprstmt", "train", data_dir=str(tmp_path), train_split="train_0")[0].text == "t0"
    assert load(reg, "fewclue/eprstmt", "dev", data_dir=str(tmp_path), dev_split="test_public")[0].label == 1
    write(tmp_path / "t", "train.json", [{"label": "100", "sentence": "a"}])
    write(
        tmp_path / "t", "labels.json", [{"label": c, "label_desc": "x"} for c in TASKS["clue/tnews"].labels + ("105",)]
    )
    with pytest.raises(DataError, match=r"labels.json: its labels differ .*unexpected: \['105'\]"):
        load(reg, "clue/tnews", "train", data_dir=str(tmp_path / "t"))


def test_fewclue_test_public_is_a_labelled_test_split(reg, tmp_path):
    write(tmp_path, "test.json", [{"id": 7, "sentence": "hidden"}])
    write(tmp_path, "test_public.json", [{"id": 8, "sentence": "public", "label": "Positive"}])
    few = reg.tasks["fewclue/eprstmt"]
    hidden = load(reg, "fewclue/eprstmt", "test", data_dir=str(tmp_path))
    public = load(reg, "fewclue/eprstmt", "test", data_dir=str(tmp_path), test_split="test_public")
    assert (hidden[0].text, hidden[0].label) == ("hidden", None)  # the submission's test set has no labels
    assert (public[0].text, public[0].id, public[0].label) == ("public", 8, 1)
    params = few.params_model(data_dir=str(tmp_path), train_split="train_2", test_split="test_public")
    assert few.prediction_file(params) == "eprstmt_predict_2_test_public.json"  # never mistaken for a submission
    with pytest.raises(ValueError, match="test_split"):
        few.params_model(data_dir=str(tmp_path), test_split="dev_0")


def test_fewclue_dev_split_follows_the_train_split(reg, tmp_path):
    for k in ("0", "3", "few_all"):
        write(tmp_path, f"train_{k}.json", [{"id": 0, "sentence": f"train {k}", "label": "Negative"}])
        write(tmp_path, f"dev_{k}.json", [{"id": 0, "sentence": f"dev {k}", "label": "Negative"}])
    assert load(reg, "fewclue/eprstmt", "dev", data_dir=str(tmp_path))[0].text == "dev few_all"
    assert load(reg, "fewclue/eprstmt", "dev", data_dir=str(tmp_path), train_split="train_3")[0].text == "dev 3"
    assert (
        load(reg, "fewclue/eprstmt", "dev", data_dir=str(tmp_path), train_split="train_3", dev_split="dev_0")[0].text
        == "dev 0"
    )


def test_fewclue_subsets_are_a_fixed_sample_not_the_class_sorted_head(reg, tmp_path):
    rows = [
        {"id": i, "sentence": f"s{i}", "label": "Negative" if i < 50 else "Positive"} for i in range(100)
    ]  # sorted by class
    write(tmp_path, "train_few_all.json", rows)
    first = load(reg, "fewclue/eprstmt", "train", data_dir=str(tmp_path), max_train_samples=20)
    again = load(reg, "fewclue/eprstmt", "train", data_dir=str(tmp_path), max_train_samples=20)
    assert [e.id for e in first] == [e.id for e in again] and len(first) == 20
    assert [e.id for e in first] == sorted(e.id for e in first)  # file order kept
    assert {e.label for e in first} == {0, 1}  # the first 20 rows would all be Negative
    write(
        tmp_path / "clue",
        "train.json",
        [{"sentence1": "a", "sentence2": f"b{i}", "label": "0", "id": i} for i in range(10)],
    )
    assert [e.id for e in load(reg, "clue/afqmc", "train", data_dir=str(tmp_path / "clue"), max_train_samples=3)] == [
        0,
        1,
        2,
    ]


def test_params_are_checked_in_recipes(reg, tiny_bert, tmp_path):
    from peftkit.recipe import validate

    data = {
        "model": {"source": f"local:{tiny_bert}"},
        "method": {"name": "lora"},
        "output_dir": str(tmp_path / "o"),
        "task": {"name": "fewclue/bustm", "params": {"train_split": "dev_0", "max_train_sample": 3}},
    }
    with pytest.raises(RecipeError) as info:
        validate(data)
    text = "\n".join(info.value.problems)
    assert (
        "task.params.train_split" in text
        and "task.params.max_train_sample: unknown key — did you mean 'max_train_samples'" in text
    )


# ------------------------------------------------------------------------------- real data, end to end


def _present(spec) -> bool:
    return (CLUE_DIR / spec.folder / "test.json").is_file()


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(TASKS))
def test_real_task_trains_evaluates_and_writes_its_submission(name, tiny_bert, tmp_path, one_thread):
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    spec = TASKS[name]
    if not CLUE_DIR.is_dir():
        pytest.skip(f"no CLUE data at {CLUE_DIR}; set PEFTKIT_CLUE_DIR to a folder in the official CLUE layout")
    if not _present(spec):
        pytest.skip(
            f"{CLUE_DIR / spec.folder} is absent (this data set does not ship {name}); its format is unit-tested above"
        )
    recipe = validate(
        {
            "model": {"source": f"local:{tiny_bert}"},
            "method": {"name": "lora", "params": {"r": 4}},
            "task": {
                "name": name,
                "params": {"data_dir": str(CLUE_DIR / spec.folder), "max_train_samples": 32, "max_dev_samples": 32},
            },
            "data": {"max_length": 32},
            "train": {"epochs": 1, "batch_size": 16, "seed": 0, "lr": 5e-3},
            "eval": {"predict": True},
            "output_dir": str(tmp_path / "run"),
        }
    )
    summary = run(recipe)
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0 and summary["train"]["steps"] == 2
    from peftkit.kit.conformance import check_task  # the whole real splits (test too) keep the task contract

    rows = check_task(name, {"data_dir": str(CLUE_DIR / spec.folder)})
    assert rows["train"] > 32 and rows["dev"] > 32 and rows["test"] > 0
    predicted = Path(summary["predictions"])
    # FewCLUE names the training run (train_few_all → _all), as its multi-run submission examples do
    assert predicted.name == (spec.prediction_file.replace(".json", "_all.json") if spec.few else spec.prediction_file)
    lines = [json.loads(x) for x in predicted.read_text(encoding="utf-8").split("\n") if x.strip()]
    raw = [
        json.loads(x)
        for x in (CLUE_DIR / spec.folder / "test.json").read_text(encoding="utf-8").split("\n")
        if x.strip()
    ]
    assert [p["id"] for p in lines] == [r["id"] for r in raw]  # one line per test row, in order, with its own id
    if spec.kind == "chid":  # FewCLUE's chidf_predict: the position of the chosen idiom
        assert all(set(p) == {"id", "answer"} and p["answer"] in range(7) for p in lines)
    else:
        assert all(set(p) == {"id", "label"} and p["label"] in spec.labels for p in lines)


@pytest.mark.integration
def test_fewclue_run_scores_the_labelled_public_test_set(tiny_bert, tmp_path, one_thread):
    """`test_split: test_public` with eval.predict: FewCLUE's reported number lands in metrics.json `test`."""
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    folder = CLUE_DIR / "fewclue" / "eprstmt"
    if not (folder / "test_public.json").is_file():
        pytest.skip(f"{folder} is absent; the split choice is unit-tested above")
    recipe = validate(
        {
            "model": {"source": f"local:{tiny_bert}"},
            "method": {"name": "lora", "params": {"r": 4}},
            "task": {"name": "fewclue/eprstmt", "params": {"data_dir": str(folder), "test_split": "test_public"}},
            "data": {"max_length": 32},
            "train": {"epochs": 1, "batch_size": 16, "seed": 0, "lr": 5e-3},
            "eval": {"predict": True},
            "output_dir": str(tmp_path / "run"),
        }
    )
    summary = run(recipe)
    labels = [
        json.loads(x)["label"]
        for x in (folder / "test_public.json").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    predicted = [json.loads(x)["label"] for x in Path(summary["predictions"]).read_text(encoding="utf-8").splitlines()]
    assert (
        Path(summary["predictions"]).name == "eprstmt_predict_all_test_public.json"
        and len(predicted) == len(labels) == 610
    )
    # the recorded accuracy is the predictions' own, against the file's labels
    assert summary["test"]["accuracy"] == pytest.approx(np.mean([p == g for p, g in zip(predicted, labels)]))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] == summary["test"]
