"""Fixtures for the serving tests: tiny finished runs and a REAL ``peftkit serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peftkit.kit.tiny import tiny_recipe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m peftkit serve ...`` subprocess; stopped with SIGTERM (then SIGKILL) whatever happens."""

    def __init__(self, args: list[str], log: Path, timeout: float = 600.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "peftkit", "serve", *args, "--port", str(self.port)]
        # `timeout` is the hard upper bound: a hung test never leaves a server behind
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["timeout", "-s", "KILL", str(int(timeout)), *cmd],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_ready(self, seconds: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready in {seconds} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # to `timeout`, which passes it on to the server
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode


def train_tiny(
    bert: Path, data: dict[str, Path], out: Path, flip: bool = False, labels: list[str] | None = None
) -> Path:
    """A finished LoRA run on the tiny BERT in a few steps; ``flip`` swaps pos/neg in the data (so the two
    runs learn different answers on the same base); ``labels`` replaces the task's ["neg", "pos"]."""
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    if flip:
        d = out.parent / f"{out.name}-data"
        d.mkdir(parents=True, exist_ok=True)
        swapped = {}
        for split, path in data.items():
            rows = [json.loads(x) for x in path.read_text().splitlines()]
            for r in rows:
                if "label" in r:
                    r["label"] = {"pos": "neg", "neg": "pos"}[r["label"]]
            swapped[split] = d / path.name
            swapped[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
        data = swapped
    recipe = tiny_recipe(bert, data, out, max_steps=4, batch_size=16, lr=5e-2, seed=1 if flip else 0)
    recipe["eval"] = {"predict": True}
    if labels is not None:
        recipe["task"]["params"]["labels"] = labels
    run(validate(recipe))
    return out


def own_probabilities(run_dir: Path, texts: list[str]) -> Any:
    """What peftkit itself computes for ``texts`` with the run reloaded from disk (the predict path)."""
    import torch

    from peftkit.build.batches import encode
    from peftkit.evaluation.evaluate import predict_logits
    from peftkit.evaluation.runs import load_run
    from peftkit.plugin.contracts import Example

    s, model = load_run(run_dir)
    data = encode(
        [Example(text=t, label=None, id=i) for i, t in enumerate(texts)],
        s.tokenizer,
        s.recipe.data.max_length,
        use_token_types=s.use_token_types,
        split="test",
    )
    logits, _ = predict_logits(model, data, 8, s.pad_id, torch.device("cpu"))
    return torch.softmax(torch.from_numpy(logits), -1).numpy()


@pytest.fixture
def trainer():
    """:func:`train_tiny`, for tests that train a run of their own."""
    return train_tiny


@pytest.fixture
def own_probs():
    """``own_probs(run_dir, texts)``: the run's own probabilities for ``texts`` (numpy, one row per text)."""
    return own_probabilities


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, tiny_bert, tiny_data) -> dict[str, Path]:
    """Two LoRA runs on one tiny base: ``a`` (the data as is) and ``b`` (labels flipped)."""
    d = tmp_path_factory.mktemp("serve-runs")
    return {"a": train_tiny(tiny_bert, tiny_data, d / "a"), "b": train_tiny(tiny_bert, tiny_data, d / "b", flip=True)}


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, object]:
    """A keys file with three keys: every model; only model a; a slow rate limit."""
    from peftkit.serve.auth import add_key

    path = tmp_path_factory.mktemp("keys") / "keys.json"
    return {
        "path": path,
        "all": add_key(path, "all", ["*"], rate=1000, burst=1000),
        "only_a": add_key(path, "only-a", ["a"], rate=1000, burst=1000),
        "slow": add_key(path, "slow", ["*"], rate=0.2, burst=2),
    }


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_runs, keys) -> Iterator[Server]:
    """Runs a and b served from one base (two adapters), with keys and a 40 ms batching window."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = Server(
        [
            f"a={tiny_runs['a']}", f"b={tiny_runs['b']}", "--keys", str(keys["path"]),
            "--max-wait-ms", "40", "--max-inputs", "8", "--max-queue", "64", "--max-body", "20000",
            "--max-chars", "2000", "--threads", "1",
        ],
        log,
    )  # fmt: skip
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server_cls() -> type[Server]:
    """The :class:`Server` class, for tests that start a server of their own."""
    return Server


@pytest.fixture
def metric():
    """``metric(text, name, **labels)``: one sample's value in a Prometheus text exposition (0 when absent)."""
    return read_metric


def read_metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        base, _, rest = key.partition("{")
        got = ",".join(sorted(x for x in rest.rstrip("}").split(",") if x)) if rest else ""
        if base == name and got == want:
            return float(value)
    return 0.0


def train_tiny_chat(llama: Path, out: Path) -> Path:
    """A finished lm/sft LoRA run on the tiny Llama (alpaca template: the answer ends with </s>), a few steps."""
    from peftkit.kit.tiny import sentiment_rows
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    files = {}
    for split, n, seed in (("train", 48, 0), ("dev", 8, 1)):
        rows = [
            {"instruction": r["text"], "output": "good" if r["label"] == "pos" else "bad"}
            for r in sentiment_rows(n, seed)
        ]
        files[split] = out.parent / f"chat-{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "model": {"source": f"local:{llama}"},
        "method": {"name": "lora", "params": {}},
        "task": {
            "name": "lm/sft",
            "params": {
                "train_file": str(files["train"]), "dev_file": str(files["dev"]), "template": "alpaca",
                "generation": {"max_new_tokens": 3, "samples": 2},
            },
        },
        "data": {"max_length": 32},
        "train": {"epochs": 1, "batch_size": 8, "lr": 2e-2, "seed": 0, "max_steps": 4},
        "output_dir": str(out),
    }  # fmt: skip
    run(validate(recipe))
    return out


@pytest.fixture(scope="session")
def tiny_chat_run(tmp_path_factory, tiny_llama) -> Path:
    """A finished decoder (lm/sft) run on the tiny Llama."""
    return train_tiny_chat(tiny_llama, tmp_path_factory.mktemp("chat-run") / "run")


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory, tiny_chat_run, tiny_runs, keys) -> Iterator[Server]:
    """The decoder run ``chat`` next to the classifier ``a``, with keys; at most 16 answer tokens a request."""
    log = tmp_path_factory.mktemp("chat-server") / "server.log"
    srv = Server(
        [f"chat={tiny_chat_run}", f"a={tiny_runs['a']}", "--keys", str(keys["path"]), "--max-tokens", "16",
         "--max-chars", "2000", "--threads", "1"],
        log,
    )  # fmt: skip
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
