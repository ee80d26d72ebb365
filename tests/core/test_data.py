"""Batching and metrics: every example once per epoch, deterministic order, exact padding."""

from __future__ import annotations

import numpy as np
import pytest

from peftkit.build.batches import Encoded, collate, eval_batches, length_grouped_batches, steps_per_epoch
from peftkit.evaluation.metrics import classification_metrics
from peftkit.plugin.contracts import Example


def test_length_grouped_batches_cover_everything_once_and_are_deterministic():
    lengths = np.random.default_rng(0).integers(3, 100, size=1000)
    a = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert a == length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    # grouping reduces padding compared with random batches
    padded = sum(len(b) * lengths[b].max() for b in a)
    rand = np.random.default_rng(0).permutation(1000)
    padded_random = sum(32 * lengths[rand[i : i + 32]].max() for i in range(0, 1000, 32))
    assert padded < 0.8 * padded_random


def test_eval_batches_sorted_longest_first():
    lengths = np.array([3, 9, 1, 7])
    assert eval_batches(lengths, 2) == [[1, 3], [0, 2]]


def test_collate_pads_and_masks():
    enc = Encoded([[5, 6, 7], [8]], np.array([1, 0]), [Example("a"), Example("b")])
    b = collate(enc, [0, 1], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [1, 0]
    unlabelled = Encoded([[5]], np.array([-1]), [Example("a")])
    assert "labels" not in collate(unlabelled, [0], 0)


def test_collate_keeps_the_index_order_and_token_types():
    enc = Encoded(
        [[1], [2, 3, 4], [5, 6]],
        np.array([0, 1, 2]),
        [Example(t) for t in "abc"],
        token_type_ids=[[0], [0, 1, 1], [0, 1]],
    )
    b = collate(enc, [2, 0, 1], pad_id=9)
    assert b["input_ids"].tolist() == [[5, 6, 9], [1, 9, 9], [2, 3, 4]]
    assert b["token_type_ids"].tolist() == [[0, 1, 0], [0, 0, 0], [0, 1, 1]]
    assert b["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    assert b["labels"].tolist() == [2, 0, 1] and b["input_ids"].dtype == b["labels"].dtype


@pytest.mark.parametrize(
    "n,bs,acc,procs,expected", [(96, 16, 1, 1, 6), (97, 16, 1, 1, 7), (100, 8, 4, 1, 4), (100, 8, 1, 2, 7)]
)
def test_steps_per_epoch(n, bs, acc, procs, expected):
    assert steps_per_epoch(n, bs, acc, procs) == expected


def test_classification_metrics_match_a_hand_computation():
    rng = np.random.default_rng(0)
    p, r = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    ours = classification_metrics(p, r, 4)
    assert ours["accuracy"] == pytest.approx(float(np.mean(p == r)))
    # macro-F1 by hand for label 0..3
    f1 = []
    for c in range(4):
        tp = ((p == c) & (r == c)).sum()
        fp = ((p == c) & (r != c)).sum()
        fn = ((p != c) & (r == c)).sum()
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert ours["f1_macro"] == pytest.approx(np.mean(f1))


def test_predict_logits_runs_under_the_requested_autocast(tiny_bert):
    import torch
    from transformers import AutoModelForSequenceClassification

    from peftkit.evaluation.evaluate import predict_logits

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    enc = Encoded(
        [rng.integers(5, vocab, n).tolist() for n in (7, 3, 12, 5)], np.array([0, 2, 1, 1]), [Example("x")] * 4
    )
    fp32, loss32 = predict_logits(model, enc, 2, 0, "cpu")
    bf16, loss16 = predict_logits(model, enc, 2, 0, "cpu", "bf16")
    assert fp32.dtype == bf16.dtype == np.float32 and fp32.shape == (4, 3)
    assert not np.array_equal(fp32, bf16)  # bf16 matmuls round differently ...
    np.testing.assert_allclose(bf16, fp32, atol=0.05)  # ... but compute the same function
    assert loss16 == pytest.approx(loss32, abs=0.02)
    one_by_one = np.concatenate(
        [
            predict_logits(model, Encoded([ids], enc.labels[i : i + 1], [Example("x")]), 1, 0, "cpu")[0]
            for i, ids in enumerate(enc.input_ids)
        ]
    )
    np.testing.assert_allclose(fp32, one_by_one, atol=1e-5)  # padding and length-sorted batches change nothing


def test_eval_batch_size_defaults_follow_precision(tiny_bert, tiny_data, tmp_path):
    from peftkit.evaluation.evaluate import eval_batch_size
    from peftkit.kit.tiny import tiny_recipe
    from peftkit.recipe import validate

    def bs(train=None, eval_=None):
        r = tiny_recipe(tiny_bert, tiny_data, tmp_path, batch_size=8, **(train or {}))
        r["eval"] = eval_ or {}
        return eval_batch_size(validate(r))

    assert bs({"mixed_precision": "no"}) == 8  # float32 matmuls peak at small batches on CPU
    assert bs({"mixed_precision": "bf16"}) == 32  # bf16 ones want bigger matrices
    assert bs({"mixed_precision": "bf16"}, {"batch_size": 5}) == 5  # an explicit eval.batch_size wins


@pytest.mark.parametrize(
    "name, body",
    [
        ("rows.csv", "text,label\nhao,pos\n\ncha,neg\n"),
        ("rows.jsonl", '{"text": "hao", "label": "pos"}\n\n{"text": "cha", "label": "neg"}\n'),
    ],
)
def test_text_classification_ids_without_id_field_are_row_positions_from_0(tmp_path, name, body):
    """What joins predictions back to the rows: the data row's position (not the file's line number)."""
    from peftkit.plugin.registry import get_registry

    (tmp_path / name).write_text(body, encoding="utf-8")
    task = get_registry().tasks["text-classification"]
    params = task.params_model(train_file=str(tmp_path / name), labels=["neg", "pos"])
    assert [(e.id, e.text, e.label) for e in task.load_split(params, "train")] == [(0, "hao", 1), (1, "cha", 0)]


def test_a_test_row_without_its_id_field_is_named(tmp_path):
    from peftkit.errors import DataError
    from peftkit.plugin.registry import get_registry

    (tmp_path / "test.jsonl").write_text('{"id": "a", "text": "hao"}\n{"text": "cha"}\n', encoding="utf-8")
    task = get_registry().tasks["text-classification"]
    params = task.params_model(
        train_file=str(tmp_path / "test.jsonl"),
        test_file=str(tmp_path / "test.jsonl"),
        labels=["neg", "pos"],
        id_field="id",
    )
    with pytest.raises(
        DataError, match=r"test.jsonl:2: row has no id field 'id' \(fields: text\); set task.params.id_field"
    ):
        task.load_split(params, "test")
