"""AFQMC probe: does frozen multilingual-e5-small carry the paraphrase signal, and through which pooling?

Embeds random AFQMC train/dev pairs once with the frozen model and reports, for mean pooling and for the
[CLS] token: the zero-shot cosine AUC, and a logistic regression on pair features (|a-b|, a*b, cosine), with
and without class weights — accuracy, macro-F1 and AUC on dev against the majority class.

Run: pip install scikit-learn && PEFTKIT_CLUE_DIR=/data/clue python benchmarks/afqmc_probe.py
(about 5 minutes on 2 idle CPU cores). The numbers are in docs/tasks.md ("Why AFQMC stays at the majority class").
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from transformers import AutoModel, AutoTokenizer

from peftkit.plugin.registry import get_registry

CLUE = os.environ.get("PEFTKIT_CLUE_DIR", "../shared/data/clue")
SIZES = {"train": 3000, "dev": 2000}
HIDDEN = 384


def sample(split: str, n: int) -> list[dict]:
    with open(f"{CLUE}/afqmc/{split}.json", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:n]]


def embed(tok, model, texts: list[str], batch: int = 64) -> np.ndarray:
    """[mean-pooled | CLS] per text."""
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out.append(torch.cat([(hidden * mask).sum(1) / mask.sum(1), hidden[:, 0]], -1).numpy())
    return np.concatenate(out)


def pair_features(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return cos, np.concatenate([np.abs(a - b), a * b, cos[:, None]], 1)


def report(name: str, train: tuple, dev: tuple) -> None:
    (_, x_train, y_train), (cos, x_dev, y_dev) = train, dev
    print(f"{name}: zero-shot cosine AUC on dev {roc_auc_score(y_dev, cos):.3f}")
    for weight in (None, "balanced"):
        clf = LogisticRegression(max_iter=2000, class_weight=weight).fit(x_train, y_train)
        pred = clf.predict(x_dev)
        print(
            f"  logistic regression (class_weight={weight}): accuracy {accuracy_score(y_dev, pred):.3f} "
            f"macro-F1 {f1_score(y_dev, pred, average='macro'):.3f} "
            f"AUC {roc_auc_score(y_dev, clf.decision_function(x_dev)):.3f} predicted-positive {pred.mean():.3f}"
        )


def main() -> None:
    torch.set_num_threads(1)
    path = get_registry().sources["packaged"].resolve("multilingual-e5-small")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    start, feats = time.time(), {}
    for split, n in SIZES.items():
        rows = sample(split, n)
        a = embed(tok, model, ["query: " + r["sentence1"] for r in rows])
        b = embed(tok, model, ["query: " + r["sentence2"] for r in rows])
        feats[split] = (a, b, np.array([int(r["label"]) for r in rows]))
    y_dev = feats["dev"][2]
    print(
        f"embedded in {time.time() - start:.0f} s; positive share: train {feats['train'][2].mean():.3f} dev {y_dev.mean():.3f}"
    )
    for name, part in (("mean pooling", slice(0, HIDDEN)), ("[CLS]", slice(HIDDEN, 2 * HIDDEN))):
        split_feats = {}
        for split, (a, b, y) in feats.items():
            cos, x = pair_features(a[:, part], b[:, part])
            split_feats[split] = (cos, x, y)
        report(name, split_feats["train"], split_feats["dev"])


if __name__ == "__main__":
    main()
