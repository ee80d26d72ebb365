"""Peak memory and model size, for metrics.json (process RSS peak on CPU, max allocated on CUDA)."""

from __future__ import annotations

import resource
import sys
from typing import Any


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


class MemoryMeter:
    """Started before the model is loaded; reports peaks at the end of a run."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.start_rss = peak_rss_bytes()

    def report(self, model: Any) -> dict[str, Any]:
        import torch

        from peftkit.loading import memory_footprint

        out: dict[str, Any] = {"peak_rss_bytes": peak_rss_bytes(), "model_bytes": memory_footprint(model)}
        if self.cuda:
            out["peak_cuda_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            out["device"] = torch.cuda.get_device_name()
        else:
            out["device"] = "cpu"
        out["peak_bytes"] = out.get("peak_cuda_allocated_bytes", out["peak_rss_bytes"])
        return out
