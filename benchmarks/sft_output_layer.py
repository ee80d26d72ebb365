"""One SFT training step (forward + backward) on Gemma 3 270M, batch 8: the output layer over the answer
positions only (peftkit's collate) vs over every position (the same batch, plain labels).

Run:  python benchmarks/sft_output_layer.py   (needs peftkit[gemma]; converts the packaged model on first use)
"""

import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from peftkit import EncodeContext
from peftkit.plugin.registry import build_registry
from peftkit_plugins.causal_lm.chat import ChatExample
from peftkit_plugins.causal_lm.objective import CausalLM

torch.set_num_threads(2)
path = build_registry().sources["packaged"].resolve("gemma-3-270m", revision=None)
tok = AutoTokenizer.from_pretrained(str(path))
q = "我在你们店买的手机屏幕有划痕，已经拆封了，还能不能退货？订单号是 20261203，麻烦尽快处理。"
rows = [
    ChatExample(
        q,
        messages=[
            {"role": "user", "content": q + "!" * i},
            {"role": "assistant", "content": "可以退货，请在订单页申请。"},
        ],
    )
    for i in range(8)
]
enc = CausalLM().encode(rows, tok, EncodeContext(max_length=128, split="train", options={}))
batch = enc.collate(list(range(8)), int(tok.pad_token_id))
plain = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
model = AutoModelForCausalLM.from_pretrained(str(path)).train()
print("tokens", tuple(batch["input_ids"].shape), "kept positions", tuple(batch["logits_to_keep"].shape))
res = {}
for name, b in (("sliced", batch), ("all", plain)) * 3:
    model.zero_grad()
    t = time.perf_counter()
    loss = model(**b).loss
    loss.backward()
    res.setdefault(name, []).append(time.perf_counter() - t)
    print(name, f"loss {loss.item():.4f}", f"{res[name][-1]:.2f} s")
s, a = min(res["sliced"]), min(res["all"])
print(f"best of 3: sliced {s:.2f} s, all positions {a:.2f} s -> {a / s:.2f}x faster step")
