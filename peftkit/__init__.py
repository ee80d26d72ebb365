"""peftkit: plugin-based parameter-efficient fine-tuning.

Public API (importing this package does not import torch):

- :data:`hookimpl` — decorator for plugin hook implementations.
- :class:`Method`, :class:`Task`, :class:`Objective`, :class:`ModelSource`, :class:`Example`,
  :class:`ApplyContext`, :class:`EncodeContext`, :class:`RunState` — plugin contracts; the errors a plugin raises.
- :func:`load_recipe`, :func:`run`, :func:`load_run`, :func:`zero_shot` — use peftkit from Python.

Plugin authors also import :mod:`peftkit.kit`; nothing else of the core is API.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from peftkit.errors import DataError, ModelSourceError, PeftkitError, PluginError, RecipeError, TrainingError
from peftkit.plugin.contracts import ApplyContext, EncodeContext, Example, Method, ModelSource, Objective, Task
from peftkit.plugin.hookspecs import hookimpl
from peftkit.plugin.state import RunState
from peftkit.recipe import Recipe, load_recipe
from peftkit.run_dir import RunResult

__version__ = "0.1.0"

# On AVX512-BF16 CPUs bitsandbytes warns, whenever peft imports it, that it could not fetch an optional
# 4-bit kernel from the Hugging Face hub (the `kernels` package); its own 4/8-bit CPU path works without
# it, and offline it can never succeed. Only that one message is dropped.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")
)
# peft asks every model `is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning on
# each run; neither the user nor peftkit calls it.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def run(recipe: Recipe, *, overwrite: bool = False, resume: bool = False, registry: Any = None) -> RunResult:
    """Train a validated recipe into ``recipe.output_dir``.

    Args:
        recipe: from :func:`load_recipe`.
        overwrite: replace a finished run already in ``output_dir``.
        resume: continue an interrupted run from its last checkpoint.
        registry: the plugin registry to use (default: every installed plugin).

    Returns:
        What ``metrics.json`` holds: the final dev metrics, the best evaluation, timings, memory.
    """
    from peftkit.train.loop import run as _run

    return _run(recipe, registry=registry, overwrite=overwrite, resume=resume)


def zero_shot(recipe: Recipe, *, registry: Any = None) -> dict[str, Any]:
    """Dev metrics of ``recipe``'s base model, untrained and without the method (the baseline to compare a run
    with): ``{"zero_shot": metrics, "seconds": ..., "samples": ...}``."""
    from peftkit.evaluation.runs import zero_shot as _zero_shot

    return _zero_shot(recipe, registry=registry)


def load_run(
    run_dir: str | Path, *, splits: tuple[str, ...] = (), overrides: list[str] | None = None, registry: Any = None
) -> tuple[Any, Any]:
    """Rebuild a finished run's model for inference.

    Args:
        run_dir: a folder a finished :func:`run` wrote.
        splits: task splits to load and tokenise as well (``("dev",)``, ``("test",)``).
        overrides: ``key=value`` changes allowed on a finished run (``task.params.*``, ``eval.batch_size``,
            ``eval.merged``, ``train.mixed_precision``).
        registry: the plugin registry to use (default: every installed plugin).

    Returns:
        ``(setup, model)``. ``model`` is the trained model (transformers, with the method applied and the
        run's ``model/`` weights loaded) in eval mode. ``setup.recipe`` is the run's resolved recipe,
        ``setup.method`` / ``setup.task`` the plugin objects and ``setup.mparams`` / ``setup.tparams`` their
        validated params, ``setup.tokenizer`` the tokenizer, ``setup.labels`` the label names in id order,
        and ``setup.data[split]`` the tokenised rows of each split asked for.

    Raises:
        PeftkitError: ``run_dir`` is not a finished run, or an override changes what was trained.
    """
    from peftkit.evaluation.runs import load_run as _load

    return _load(run_dir, registry=registry, splits=splits, overrides=overrides)


__all__ = [
    "ApplyContext",
    "DataError",
    "EncodeContext",
    "Example",
    "Method",
    "ModelSource",
    "ModelSourceError",
    "Objective",
    "PeftkitError",
    "PluginError",
    "Recipe",
    "RecipeError",
    "RunResult",
    "RunState",
    "Task",
    "TrainingError",
    "__version__",
    "hookimpl",
    "load_recipe",
    "load_run",
    "run",
    "zero_shot",
]
