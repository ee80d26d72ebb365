"""Serving the real offline model (multilingual-e5-small) on real CLUE dev rows; workers, masked logs, SIGTERM.

Slow (a short real training run, model loads): marked integration.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from peftkit.cli import main

pytestmark = pytest.mark.integration

CLUE = Path(os.environ.get("PEFTKIT_CLUE_DIR") or Path(__file__).parents[2] / ".." / "shared" / "data" / "clue")
DEV_ROWS = 200


@pytest.fixture(scope="module")
def e5_run(tmp_path_factory) -> Path:
    reuse = os.environ.get("PEFTKIT_TEST_E5_RUN")  # a finished e5 TNEWS LoRA run, to skip training here
    if reuse:
        return Path(reuse)
    if not (CLUE / "tnews" / "dev.json").is_file():
        pytest.skip(f"CLUE data not found at {CLUE} (set PEFTKIT_CLUE_DIR)")
    d = tmp_path_factory.mktemp("e5")
    recipe = yaml.safe_load((Path(__file__).parents[2] / "recipes/clue/tnews/e5-small_lora.yaml").read_text())
    recipe["task"]["params"].update(data_dir=str(CLUE / "tnews"), max_train_samples=320, max_dev_samples=DEV_ROWS)
    recipe["train"].update(max_steps=10, batch_size=32)
    recipe["eval"] = {"predict": False}
    recipe["output_dir"] = str(d / "run")
    (d / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    assert main(["run", str(d / "recipe.yaml")]) == 0
    return d / "run"


def _dev_texts() -> list[str]:
    rows = [json.loads(x) for x in (CLUE / "tnews" / "dev.json").read_text(encoding="utf-8").splitlines()[:DEV_ROWS]]
    return [r["sentence"] for r in rows]


def _peftkit_probabilities(run_dir: Path) -> np.ndarray:
    import torch

    from peftkit.evaluation.evaluate import predict_logits
    from peftkit.evaluation.runs import load_run

    s, model = load_run(run_dir, splits=("dev",))
    logits, _ = predict_logits(model, s.data["dev"], 32, s.pad_id, torch.device("cpu"))
    return torch.softmax(torch.from_numpy(logits), -1).numpy()


def test_export_of_a_real_e5_run_predicts_like_peftkit_on_real_dev_rows(e5_run, tmp_path):
    from transformers import pipeline

    out = tmp_path / "tnews-e5"
    assert main(["export", str(e5_run), "--out", str(out)]) == 0
    own = _peftkit_probabilities(e5_run)
    clf = pipeline("text-classification", model=str(out), device="cpu", top_k=None)
    got = clf(_dev_texts(), truncation=True, batch_size=1)
    labels = json.loads((out / "config.json").read_text())["id2label"]
    probs = np.array(
        [[{g["label"]: g["score"] for g in row}[labels[str(i)]] for i in range(len(labels))] for row in got]
    )
    agree = float(np.mean(probs.argmax(-1) == own.argmax(-1)))
    assert agree >= 0.995, agree  # merged weights round differently: a near-tie may flip, no more
    assert np.abs(probs - own).max() < 2e-3
    fm = yaml.safe_load((out / "README.md").read_text().split("---", 2)[1])
    assert fm["base_model"] == "intfloat/multilingual-e5-small" and fm["license"] == "mit"
    assert "zh" in fm["language"] and fm["datasets"] == ["clue"]


def _served(server_cls, args, log):
    srv = server_cls(args, log)
    srv.wait_ready(240)
    return srv


def test_two_workers_mask_logged_texts_and_drain_on_sigterm(e5_run, tmp_path, server_cls, metric):
    srv = _served(
        server_cls, [f"tnews={e5_run}", "--workers", "2", "--log-texts", "--max-wait-ms", "200"], tmp_path / "log"
    )
    try:
        secret = "张先生手机13812345678，邮箱zhang@example.com，卡号6222021234567890128"
        r = httpx.post(srv.url + "/v1/classify", json={"model": "tnews", "input": secret}, timeout=60)
        assert r.status_code == 200

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                tasks = [asyncio.create_task(c.post("/v1/classify", json={"input": t})) for t in _dev_texts()[:16]]
                await asyncio.sleep(0.05)  # the requests are in the servers' batching window now
                srv.proc.send_signal(15)
                return [(await t).status_code for t in tasks]

        codes = asyncio.run(burst())
        assert codes == [200] * 16  # in-flight requests were answered before the workers exited
        assert srv.proc.wait(60) == 0
    finally:
        srv.stop()
    log = (tmp_path / "log").read_text(encoding="utf-8")
    assert "138****5678" in log and "[EMAIL]" in log and "[CARD ****0128]" in log
    assert "13812345678" not in log and "zhang@example.com" not in log and "6222021234567890128" not in log


def test_serve_export_and_run_side_by_side_agree(e5_run, tmp_path, server_cls):
    out = tmp_path / "exp"
    assert main(["export", str(e5_run), "--out", str(out)]) == 0
    srv = _served(server_cls, [f"run={e5_run}", f"exp={out}", "--no-merge"], tmp_path / "log")
    try:
        texts = _dev_texts()[:32]
        start = time.perf_counter()
        a = httpx.post(srv.url + "/v1/classify", json={"model": "run", "input": texts}, timeout=120).json()
        b = httpx.post(srv.url + "/v1/classify", json={"model": "exp", "input": texts}, timeout=120).json()
        assert time.perf_counter() - start < 120
        pa, pb = (np.array([d["probs"] for d in x["data"]]) for x in (a, b))
        assert np.abs(pa - pb).max() < 2e-3
    finally:
        srv.stop()
