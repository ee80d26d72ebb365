"""Speed benchmark: peftkit vs the hand-written HF Trainer peer, measured in one run on this machine.

    python -m benchmarks.throughput [--train-rows 8000] [--data ../shared/data/clue/tnews] [--mixed-precision bf16]

Trains multilingual-e5-small + LoRA for one epoch on the first N TNEWS train rows (max length 128,
batch 32, same seed and LoRA config) with both, evaluates on the TNEWS dev set, and times
`peftkit validate` / `peftkit plugins` start-up. Prints a markdown table with ratios to the peer.
``--mixed-precision bf16`` runs both sides under bf16 autocast (peftkit ``train.mixed_precision=bf16``, the
peer ``TrainingArguments(bf16=True)``), training and evaluation alike — a CPU needs AVX512-BF16 for it to pay.
Not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "clue" / "tnews" / "e5-small_lora.yaml"


def _model_dir() -> Path:
    from peftkit.plugin.registry import get_registry

    return Path(get_registry().sources["packaged"].resolve("multilingual-e5-small"))


def _wall(cmd: list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def _run(cmd: list[str]) -> str:
    """Run one side; on failure stop with its own error output rather than a bare exit status."""
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return res.stdout


def run_peftkit(a: argparse.Namespace, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "peftkit",
        "run",
        str(RECIPE),
        "--overwrite",
        f"output_dir={out}",
        f"task.params.data_dir={a.data}",
        f"task.params.max_train_samples={a.train_rows}",
        "task.params.max_dev_samples=null",
        f"data.max_length={a.max_length}",
        "train.batch_size=32",
        "train.epochs=1",
        f"train.lr={a.lr}",
        "train.seed=42",
        "eval.predict=false",
        "method.params.target_modules=[query,key,value,dense]",
        f"train.mixed_precision={a.mixed_precision}",
    ]
    _run(cmd)
    m = json.loads((out / "metrics.json").read_text())
    return {
        "train_samples_per_second": m["train"]["samples_per_second"],
        "eval_samples_per_second": m["eval"]["samples_per_second"],
        "dev_accuracy": m["final"]["accuracy"],
        "train_seconds": m["train"]["seconds"],
    }


def run_peer(a: argparse.Namespace, model: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.peer_trainer",
        "--model",
        str(model),
        "--data",
        str(a.data),
        "--train-rows",
        str(a.train_rows),
        "--max-length",
        str(a.max_length),
        "--lr",
        str(a.lr),
        "--targets",
        "query,key,value,dense",
    ] + (["--bf16"] if a.mixed_precision == "bf16" else [])
    return json.loads(_run(cmd).strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="peftkit vs HF Trainer: throughput and accuracy, measured in one run")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("PEFTKIT_CLUE_DIR", REPO.parent / "shared" / "data" / "clue")) / "tnews",
    )
    ap.add_argument("--train-rows", type=int, default=8000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--mixed-precision", choices=["no", "bf16"], default="no", help="autocast for both sides (default: float32)"
    )
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = _model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        peer = run_peer(a, model)
        ours = run_peftkit(a, Path(tmp) / "run")
    startup = {
        "validate_seconds": _wall([sys.executable, "-m", "peftkit", "validate", str(RECIPE)]),
        "plugins_seconds": _wall([sys.executable, "-m", "peftkit", "plugins"]),
    }
    rows = [
        ("train samples/s", "train_samples_per_second"),
        ("eval samples/s (TNEWS dev)", "eval_samples_per_second"),
        ("dev accuracy", "dev_accuracy"),
    ]
    print(
        f"TNEWS, multilingual-e5-small + LoRA r=8 (query,key,value,dense), first {a.train_rows} train rows, "
        f"max_length {a.max_length}, batch 32, 1 epoch, seed 42, mixed precision {a.mixed_precision}, "
        f"{os.cpu_count()} CPU cores\n"
    )
    print("| measure | HF Trainer peer | peftkit | ratio |\n|---|---|---|---|")
    for label, key in rows:
        print(f"| {label} | {peer[key]:.4g} | {ours[key]:.4g} | {ours[key] / peer[key]:.2f}× |")
    print(
        f"\nstart-up: `peftkit validate` {startup['validate_seconds']:.2f} s, `peftkit plugins` {startup['plugins_seconds']:.2f} s"
    )
    print(json.dumps({"peer": peer, "peftkit": ours, "startup": startup}))


if __name__ == "__main__":
    main()
