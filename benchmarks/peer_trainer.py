"""The hand-written peer that peftkit's speed is measured against: HF ``Trainer`` + peft LoRA.

Exactly what a user would write without peftkit: read the CLUE TNEWS json lines, tokenise with
``datasets.map``, ``DataCollatorWithPadding``, ``Trainer.train`` for one epoch, ``Trainer.predict`` on dev.
Prints one JSON line with train/eval samples per second and dev accuracy.

    python -m benchmarks.peer_trainer --model DIR --data ../shared/data/clue/tnews --train-rows 8000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

TNEWS_LABELS = ["100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113", "114", "115", "116"]


def read(path: Path, limit: int | None) -> dict[str, list]:
    texts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(texts) >= limit:
                break
            row = json.loads(line)
            texts.append(row["sentence"])
            labels.append(TNEWS_LABELS.index(str(row["label"])))
    return {"text": texts, "label": labels}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model folder")
    ap.add_argument("--data", required=True, help="CLUE tnews folder (train.json, dev.json)")
    ap.add_argument("--train-rows", type=int, default=8000)
    ap.add_argument("--dev-rows", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--targets", default="query,key,value,dense", help="LoRA target module names, comma-separated")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="/tmp/peftkit-peer")
    ap.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for training and prediction (TrainingArguments(bf16=True))"
    )
    a = ap.parse_args(argv)

    import datasets
    import numpy as np
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    train = datasets.Dataset.from_dict(read(Path(a.data) / "train.json", a.train_rows))
    dev = datasets.Dataset.from_dict(read(Path(a.data) / "dev.json", a.dev_rows))
    enc = lambda b: tok(b["text"], truncation=True, max_length=a.max_length)  # noqa: E731
    train, dev = train.map(enc, batched=True), dev.map(enc, batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=len(TNEWS_LABELS))
    cfg = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=a.targets.split(",")
    )
    model = get_peft_model(model, cfg)
    args = TrainingArguments(
        output_dir=a.out,
        per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=a.eval_batch_size,
        learning_rate=a.lr,
        num_train_epochs=1,
        warmup_steps=0.06,
        weight_decay=0.01,
        seed=a.seed,
        logging_steps=50,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=a.bf16,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = trainer.predict(dev)
    eval_s = time.perf_counter() - t0
    acc = float((np.argmax(pred.predictions, -1) == np.array(dev["label"])).mean())
    out = {
        "train_seconds": train_s,
        "train_samples_per_second": len(train) / train_s,
        "eval_seconds": eval_s,
        "eval_samples_per_second": len(dev) / eval_s,
        "dev_accuracy": acc,
        "train_rows": len(train),
        "dev_rows": len(dev),
        "torch_threads": __import__("torch").get_num_threads(),
        "pid": os.getpid(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
