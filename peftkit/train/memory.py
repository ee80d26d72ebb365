"""Peak memory and model size, for metrics.json (process RSS peak on CPU, max allocated on CUDA).

``metrics.json["memory"]`` holds:

- ``peak_bytes``: the number to compare runs by — peak CUDA allocation on a GPU, peak process RSS on CPU;
- ``peak_rss_bytes`` and ``start_rss_bytes`` (before the model was loaded: imports, data) always,
  and ``peak_cuda_allocated_bytes`` on CUDA;
- ``model_bytes``: the trained model's weights in memory, quantized weights at their packed size plus
  their quantization constants (see :func:`model_bytes`);
- ``device``: ``cpu`` or the GPU's name.

Peak RSS is per process and never goes down: compare configurations in separate processes (the
benchmark in :mod:`benchmarks.quantization` does).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from typing import Any


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def _quant_tensors(param: Any) -> Iterator[Any]:
    """Tensors bitsandbytes keeps beside a packed weight: 4-bit block scales (and their own scales when
    double-quantized, plus the code book), or 8-bit row scales."""
    state = getattr(param, "quant_state", None)
    while state is not None:
        for name in ("absmax", "code", "offset"):
            t = getattr(state, name, None)
            if t is not None and hasattr(t, "element_size"):
                yield t
        state = getattr(state, "state2", None)
    scb = getattr(param, "SCB", None)
    if scb is not None:
        yield scb


def model_bytes(model: Any) -> int:
    """Bytes of parameters, buffers and quantization constants, each storage counted once.

    A 4-bit weight is counted at its packed size (two values per byte) plus its block scales, an
    8-bit weight at one byte per value plus its row scales. Shared storage (tied embeddings, the
    code book every 4-bit layer points to) is counted once.
    """
    seen: set[tuple[int, int]] = set()
    total = 0

    def add(t: Any) -> None:
        nonlocal total
        key = (t.data_ptr(), t.numel())
        if t.device.type == "meta" or key in seen:
            return
        seen.add(key)
        total += t.numel() * t.element_size()

    for p in model.parameters():
        add(p)
        for t in _quant_tensors(p):
            add(t)
    for b in model.buffers():
        add(b)
    return total


class MemoryMeter:
    """Started before the model is loaded; reports peaks at the end of a run."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.start_rss = peak_rss_bytes()

    def report(self, model: Any) -> dict[str, Any]:
        """The ``memory`` section of metrics.json for ``model`` (the trained model, method included)."""
        import torch

        out: dict[str, Any] = {
            "peak_rss_bytes": peak_rss_bytes(),
            "start_rss_bytes": self.start_rss,
            "model_bytes": model_bytes(model),
        }
        if self.cuda:
            out["peak_cuda_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            out["device"] = torch.cuda.get_device_name()
        else:
            out["device"] = "cpu"
        out["peak_bytes"] = out.get("peak_cuda_allocated_bytes", out["peak_rss_bytes"])
        return out
