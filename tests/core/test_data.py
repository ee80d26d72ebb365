"""Batching and metrics: every example once per epoch, deterministic order, exact padding."""

from __future__ import annotations

import numpy as np
import pytest

from peftkit.data import Encoded, collate, eval_batches, length_grouped_batches, steps_per_epoch
from peftkit.interfaces import Example
from peftkit.metrics import classification_metrics, load


def test_length_grouped_batches_cover_everything_once_and_are_deterministic():
    lengths = np.random.default_rng(0).integers(3, 100, size=1000)
    a = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert a == length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    # grouping reduces padding compared with random batches
    padded = sum(len(b) * lengths[b].max() for b in a)
    rand = np.random.default_rng(0).permutation(1000)
    padded_random = sum(32 * lengths[rand[i:i + 32]].max() for i in range(0, 1000, 32))
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


@pytest.mark.parametrize("n,bs,acc,procs,expected", [(96, 16, 1, 1, 6), (97, 16, 1, 1, 7), (100, 8, 4, 1, 4), (100, 8, 1, 2, 7)])
def test_steps_per_epoch(n, bs, acc, procs, expected):
    assert steps_per_epoch(n, bs, acc, procs) == expected


def test_shipped_metric_modules_match_numpy_offline():
    rng = np.random.default_rng(0)
    p, r = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    ours = classification_metrics(p, r, 4)
    assert load("accuracy").compute(predictions=p, references=r)["accuracy"] == pytest.approx(ours["accuracy"])
    assert load("f1").compute(predictions=p, references=r)["f1_macro"] == pytest.approx(ours["f1_macro"])
    # macro-F1 by hand for label 0..3
    f1 = []
    for c in range(4):
        tp = ((p == c) & (r == c)).sum(); fp = ((p == c) & (r != c)).sum(); fn = ((p != c) & (r == c)).sum()
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert ours["f1_macro"] == pytest.approx(np.mean(f1))
