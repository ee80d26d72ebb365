"""Tests of the peftkit-hello plugin: run them after `pip install -e .` with `pytest tests`."""

from __future__ import annotations

import pytest
from peftkit_hello.keywords import KeywordParams, KeywordTask
from pydantic import ValidationError

from peftkit.kit.conformance import check_method, check_task
from peftkit.plugin.registry import get_registry


def test_plugin_registers_its_method_and_task():
    reg = get_registry()
    assert reg.plugins["hello"].methods == ["lnfit"]
    assert reg.plugins["hello"].tasks == ["hello/keywords"]


def test_lnfit_passes_the_conformance_suite(tmp_path):
    reports = check_method("lnfit", tmp_path)  # tiny BERT and tiny Llama
    assert reports["bert"].trainable < reports["bert"].total / 10


def test_keywords_passes_the_task_conformance_suite():
    rows = check_task("hello/keywords", {"train_size": 20, "dev_size": 10, "test_size": 6})
    assert rows == {"train": 20, "dev": 10, "test": 6}


def test_keyword_splits_are_stable_labelled_and_disjoint_from_test_labels():
    task, params = KeywordTask(), KeywordParams(train_size=20, dev_size=10, test_size=6)
    train = task.load_split(params, "train")
    assert [e.text for e in train] == [e.text for e in task.load_split(params, "train")]  # same seed, same rows
    assert {e.label for e in train} == {0, 1} and len(train) == 20
    for e in train:  # the label follows the keyword
        assert (e.label == 1) == any(w in e.text.split() for w in params.positive)
    assert all(e.label is None for e in task.load_split(params, "test"))


def test_a_word_cannot_be_both_positive_and_negative():
    with pytest.raises(ValidationError, match="both positive and negative"):
        KeywordParams(positive=["good"], negative=["good", "bad"])
