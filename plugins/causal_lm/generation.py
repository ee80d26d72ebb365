"""Batched greedy generation from token-id prompts: left padding, so every row's answer starts at the same
position and a batch is one ``generate`` call."""

from __future__ import annotations

import time
from typing import Any


def unwrap(model: Any) -> Any:
    """The model ``generate`` is called on (an Accelerate/DDP wrapper keeps it in ``module``)."""
    return getattr(model, "module", model)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` with the prompts right-aligned."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.as_tensor(p)
            mask[i, width - len(p) :] = 1
    return ids, mask


def generate_ids(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    stop: list[int],
    max_new_tokens: int,
    batch_size: int,
    device: Any,
    streamer: Any = None,
) -> tuple[list[list[int]], float]:
    """Greedy answers (token ids, cut at the first stop token) to ``prompts``, in order; and the seconds it took.

    Prompts are batched by length (less padding); greedy decoding is deterministic, so a row's answer does not
    depend on the other rows of its batch beyond float rounding."""
    import numpy as np
    import torch
    from transformers import GenerationConfig

    m = unwrap(model)
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=stop or None
    )
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    out: list[list[int]] = [[] for _ in prompts]
    was_training = m.training
    m.eval()
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for j in range(0, len(order), batch_size):
                rows = order[j : j + batch_size].tolist()
                ids, mask = left_pad([prompts[i] for i in rows], pad_id)
                gen = m.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=cfg, streamer=streamer
                )
                for r, seq in zip(rows, gen[:, ids.shape[1] :].tolist()):
                    out[r] = _cut(seq, stop, pad_id)
    finally:
        m.train(was_training)
    return out, time.perf_counter() - t0


def _cut(seq: list[int], stop: list[int], pad_id: int) -> list[int]:
    for k, t in enumerate(seq):
        if t in stop:
            return seq[:k]
    while seq and seq[-1] == pad_id:  # rows that stopped early are padded to the batch's longest answer
        seq = seq[:-1]
    return seq
