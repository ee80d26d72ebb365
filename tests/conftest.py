"""Shared fixtures: tiny models and data built in code; everything offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CLUE_DIR = Path(os.environ.get("PEFTKIT_CLUE_DIR", REPO.parent / "shared" / "data" / "clue"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from peftkit.kit.tiny import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("models") / "bert")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from peftkit.kit.tiny import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("models") / "llama")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict:
    from peftkit.kit.tiny import make_text_dataset

    return make_text_dataset(tmp_path_factory.mktemp("data"), n_train=96, n_dev=48, n_test=16)
