"""Early stopping as a lifecycle plugin: end training when the selection metric stops improving.

On for a run whose recipe has ``plugins_config: {early_stopping: {patience: 3}}``. After every evaluation it
counts the evaluations since the selection metric (``eval.metric``, else the task's) last improved by more
than ``min_delta``; at ``patience`` it sets ``state.should_stop``, so the loop ends after that step and the run
finishes as usual (the best model saved so far is the run's model). The count is recomputed from
``state.history`` every time, so a resumed run stops where the uninterrupted one would. What happened is
recorded in ``metrics.json`` under ``early_stopping``.

Swap it for your own rule with ``PEFTKIT_DISABLE_PLUGINS=early_stopping`` and a plugin of your own on
``peftkit_on_eval``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peftkit import hookimpl
from peftkit.kit import ConfigSection, plugin_settings, selection_metric

log = logging.getLogger("peftkit")


class EarlyStoppingSettings(BaseModel):
    """``plugins_config.early_stopping``."""

    model_config = ConfigDict(extra="forbid")
    patience: int = Field(3, ge=1, description="evaluations without an improvement after which training stops.")
    min_delta: float = Field(
        0.0, ge=0.0, allow_inf_nan=False, description="how much the metric must rise to count as an improvement."
    )
    metric: str | None = Field(None, description="metric to watch; default the run's selection metric.")


def evaluations_without_improvement(values: list[float], min_delta: float) -> int:
    """How many of the last evaluations came after the last one that beat the best so far by more than
    ``min_delta`` (a NaN never improves). As in HF's EarlyStoppingCallback, the best follows every rise, so
    a slow creep of gains each under ``min_delta`` still stops."""
    best, since = None, 0
    for v in values:
        if v is None or math.isnan(v):
            since += 1
            continue
        improved = best is None or v > best + min_delta
        best = v if best is None else max(best, v)
        since = 0 if improved else since + 1
    return since


@hookimpl
def peftkit_register_plugin_configs():
    return [
        ConfigSection(
            "early_stopping", "stop training when the selection metric stops improving", EarlyStoppingSettings
        )
    ]


@hookimpl
def peftkit_on_eval(state: Any, metrics: dict[str, float]) -> None:
    settings = plugin_settings(state, "early_stopping", EarlyStoppingSettings)
    if settings is None:
        return
    key = settings.metric or selection_metric(state.recipe, state.task)
    values = [entry.get(key) for entry in state.history]
    since = evaluations_without_improvement(values, settings.min_delta)
    if since < settings.patience:
        return
    state.should_stop = True
    best = state.best or {}
    state.summary["early_stopping"] = {
        "stopped_at_step": state.step,
        "metric": key,
        "patience": settings.patience,
        "min_delta": settings.min_delta,
        "best_step": best.get("step"),
    }
    log.info(
        "early stopping at step %d: %s has not improved by more than %g for %d evaluations (best at step %s)",
        state.step,
        key,
        settings.min_delta,
        since,
        best.get("step"),
    )
