"""Weights & Biases tracking as a lifecycle plugin (Accelerate's ``WandBTracker``).

On for a run whose recipe has ``plugins_config: {wandb: {...}}``: the resolved recipe as the run's config,
the training loss and learning rate, every evaluation, the final metrics as the run summary, and the run
folder as a ``model`` artifact. ``mode: offline`` (the default) needs no network and no account: the run is
written under ``./wandb`` (or ``dir``), read with ``wandb leet inspect --summary``, uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from peftkit import hookimpl
from peftkit.kit import ConfigSection, trackers


class WandbSettings(BaseModel):
    """``plugins_config.wandb``: the W&B project, run name and mode."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline writes the run locally (no network, no account); online needs wandb login."
    )
    experiment: str | None = Field(
        None,
        description="W&B project; default $PEFTKIT_EXPERIMENT (set by peftkit compare), else the task name "
        "(slashes become dashes).",
    )
    run_name: str | None = Field(
        None, description="run name; default $PEFTKIT_RUN_NAME (a compare cell's name), else the output folder's name."
    )
    entity: str | None = Field(None, description="W&B entity (team or user) for online runs.")
    dir: str | None = Field(None, description="where W&B writes its wandb/ folder; default the working directory.")
    artifacts: bool = Field(True, description="log the run folder (recipe, log, model) as a W&B artifact.")


def _tracker(settings: WandbSettings, state: Any) -> Any:
    import wandb
    from accelerate.tracking import WandBTracker

    project = trackers.experiment_name(settings, state).replace("/", "-")  # W&B project names cannot hold a slash
    os.environ.setdefault("WANDB_SILENT", "true")  # the run log says what matters
    quiet = wandb.Settings(quiet=True, console="off")  # the run log says what matters; no captured stdout
    return WandBTracker(
        project,
        name=trackers.run_name(settings, state),
        mode=settings.mode,
        entity=settings.entity,
        dir=settings.dir,
        settings=quiet,
    )


def _artifacts(tracker: Any, settings: WandbSettings, state: Any, summary: dict[str, Any]) -> None:
    import wandb

    run = tracker.tracker
    if not settings.artifacts:
        return
    artifact = wandb.Artifact(name=f"{trackers.run_name(settings, state)}-run".replace("/", "-"), type="model")
    for name in trackers.ARTIFACTS:
        path = state.output_dir / name
        if path.is_dir():
            artifact.add_dir(str(path), name=name)
        elif path.is_file():
            artifact.add_file(str(path))
    run.log_artifact(artifact)


TRACKER = trackers.TrackerHooks("wandb", WandbSettings, _tracker, _artifacts)


@hookimpl
def peftkit_register_plugin_configs():
    return [ConfigSection("wandb", "log the run to Weights & Biases (offline by default)", WandbSettings)]


@hookimpl
def peftkit_on_train_begin(state):
    TRACKER.train_begin(state)


@hookimpl
def peftkit_on_step_end(state):
    TRACKER.step_end(state)


@hookimpl
def peftkit_on_eval(state, metrics):
    TRACKER.eval(state, metrics)


@hookimpl
def peftkit_on_train_end(state):
    TRACKER.train_end(state)
