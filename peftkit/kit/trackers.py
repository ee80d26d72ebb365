"""Experiment trackers as lifecycle plugins, through Accelerate's tracker classes.

A tracker plugin (``plugins/mlflow``, ``plugins/wandb``, or your own for any ``accelerate.tracking``
tracker) builds one :class:`TrackerHooks` and forwards its four lifecycle hooks to it. Per run it logs the
resolved recipe as parameters, the training loss and learning rate every ``train.log_every`` steps, every
evaluation, the final (and held-out test) metrics, and the run folder's files as artifacts.

A tracker is on for a run when the recipe has its section under ``plugins_config`` (even an empty one,
``plugins_config: {mlflow: {}}``), so installing peftkit never starts logging anywhere by itself.

Which experiment and run a run belongs to: the section's ``experiment`` / ``run_name`` when given, else
``$PEFTKIT_EXPERIMENT`` / ``$PEFTKIT_RUN_NAME`` (``peftkit compare`` sets them: the grid is one experiment, each
cell a run), else the task name and the output folder's name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

log = logging.getLogger("peftkit")

EXPERIMENT_ENV = "PEFTKIT_EXPERIMENT"
RUN_NAME_ENV = "PEFTKIT_RUN_NAME"
# what a finished run folder holds that is worth keeping next to the metrics (checkpoints are not)
ARTIFACTS = ("recipe.yaml", "train.log", "model")


def experiment_name(settings: Any, state: Any) -> str:
    """The experiment of this run (see the module docstring for the order)."""
    return getattr(settings, "experiment", None) or os.environ.get(EXPERIMENT_ENV) or str(state.recipe.task.name)


def run_name(settings: Any, state: Any) -> str:
    """The run's name within its experiment."""
    return getattr(settings, "run_name", None) or os.environ.get(RUN_NAME_ENV) or state.output_dir.name


def recipe_params(state: Any) -> dict[str, Any]:
    """The recipe as flat ``a.b.c`` parameters with plain values (what trackers store as hyperparameters)."""
    from peftkit.recipe import flatten

    flat = flatten(state.recipe.model_dump(mode="json"))
    return {k: v if isinstance(v, (bool, int, float, str)) or v is None else str(v) for k, v in flat.items()}


def numbers(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """The numeric entries of ``metrics`` under ``prefix/`` (a tracker logs numbers, not text)."""
    out = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}/{key}"] = float(value)
    return out


def plugin_settings(state: Any, name: str, model: type[BaseModel]) -> BaseModel | None:
    """The validated ``plugins_config.<name>`` section of the run's recipe, or None when the recipe has none."""
    section = (getattr(state.recipe, "plugins_config", None) or {}).get(name)
    if section is None:
        return None
    return section if isinstance(section, model) else model.model_validate(section)


class TrackerHooks:
    """The lifecycle logic of one tracker plugin; the plugin module forwards its hooks here.

    Args:
        name: the plugin's name, which is also its ``plugins_config`` key.
        settings_model: pydantic model of the plugin's ``plugins_config`` section.
        make_tracker: ``(settings, state) -> accelerate.tracking.GeneralTracker`` (not started).
        log_artifacts: ``(tracker, settings, state, summary) -> None``, uploads the run folder's files.
    """

    def __init__(
        self,
        name: str,
        settings_model: type[BaseModel],
        make_tracker: Callable[..., Any],
        log_artifacts: Callable[..., None],
    ) -> None:
        self.name = name
        self.settings_model = settings_model
        self.make_tracker = make_tracker
        self.log_artifacts = log_artifacts
        self._runs: dict[int, tuple[Any, Any]] = {}  # id(state) -> (tracker, settings)

    def train_begin(self, state: Any) -> None:
        settings = plugin_settings(state, self.name, self.settings_model)
        if settings is None or not state.is_main_process:
            return
        tracker = self.make_tracker(settings, state)
        tracker.start()
        tracker.store_init_configuration(recipe_params(state))
        self._runs[id(state)] = (tracker, settings)
        log.info(
            "%s: logging this run as %r in experiment %r",
            self.name,
            run_name(settings, state),
            experiment_name(settings, state),
        )

    def step_end(self, state: Any) -> None:
        run = self._runs.get(id(state))
        if run is not None and state.step % state.recipe.train.log_every == 0 and state.loss is not None:
            run[0].log({"train/loss": float(state.loss), "train/lr": float(state.lr or 0.0)}, step=state.step)

    def eval(self, state: Any, metrics: dict[str, Any]) -> None:
        run = self._runs.get(id(state))
        if run is not None:
            run[0].log(numbers(metrics, "eval"), step=state.step)

    def train_end(self, state: Any) -> None:
        run = self._runs.pop(id(state), None)
        if run is None:
            return
        tracker, settings = run
        summary = state.summary
        final = {**numbers(summary.get("final"), "final"), **numbers(summary.get("test"), "test")}
        final.update(numbers(summary.get("train"), "train"))  # seconds, samples/s (the loss curve is a list)
        tracker.log(final, step=state.step)
        self.log_artifacts(tracker, settings, state, summary)
        tracker.finish()
