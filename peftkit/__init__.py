"""peftkit: plugin-based parameter-efficient fine-tuning.

Public API (importing this package does not import torch):

- :data:`hookimpl` — decorator for plugin hook implementations.
- :class:`Method`, :class:`Task`, :class:`ModelSource`, :class:`Example`, :class:`ApplyContext` — plugin contracts.
- :func:`load_recipe`, :func:`run`, :func:`load_run` — use peftkit from Python.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pluggy

from peftkit.interfaces import ApplyContext, Example, Method, ModelSource, Task
from peftkit.recipe import Recipe, load_recipe

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("peftkit")

# On AVX512-BF16 CPUs bitsandbytes warns, whenever peft imports it, that it could not fetch an optional
# 4-bit kernel from the Hugging Face hub (the `kernels` package); its own 4/8-bit CPU path works without
# it, and offline it can never succeed. Only that one message is dropped.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward"))
# peft asks every model `is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning on
# each run; neither the user nor peftkit calls it.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def run(recipe: Recipe, **kwargs: Any) -> dict[str, Any]:
    """Train a validated recipe; see :func:`peftkit.runner.run`."""
    from peftkit.runner import run as _run

    return _run(recipe, **kwargs)


def load_run(run_dir: Any, **kwargs: Any) -> Any:
    """Load a finished run's ``(setup, model)``; see :func:`peftkit.inference.load_run`."""
    from peftkit.inference import load_run as _load

    return _load(run_dir, **kwargs)


__all__ = ["hookimpl", "Method", "Task", "ModelSource", "Example", "ApplyContext", "Recipe", "load_recipe", "run", "load_run", "__version__"]
