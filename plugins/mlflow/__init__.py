"""MLflow tracking as a lifecycle plugin (Accelerate's ``MLflowTracker``).

On for a run whose recipe has ``plugins_config: {mlflow: {...}}``: the resolved recipe as parameters, the
training loss and learning rate, every evaluation, the final metrics, and the run folder (recipe, log,
model, metrics.json) as artifacts. The store is ``tracking_uri`` (a local SQLite file by default, or a tracking
server ``http://host:5000``); read it back with ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` or
``mlflow.MlflowClient``.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peftkit import hookimpl
from peftkit.kit import ConfigSection, trackers


class MlflowSettings(BaseModel):
    """``plugins_config.mlflow``: where and under which names a run is logged."""

    model_config = ConfigDict(extra="forbid")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking store: sqlite:///path/mlflow.db, a server http://host:5000, ...; "
        "default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory.",
    )
    experiment: str | None = Field(
        None, description="experiment name; default $PEFTKIT_EXPERIMENT (set by peftkit compare), else the task name."
    )
    run_name: str | None = Field(
        None, description="run name; default $PEFTKIT_RUN_NAME (a compare cell's name), else the output folder's name."
    )
    artifacts: bool = Field(True, description="upload the run folder (recipe, log, model, metrics.json) as artifacts.")


def _tracker(settings: MlflowSettings, state: Any) -> Any:
    import mlflow
    from accelerate.tracking import MLflowTracker

    mlflow.set_tracking_uri(settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    return MLflowTracker(
        experiment_name=trackers.experiment_name(settings, state), run_name=trackers.run_name(settings, state)
    )


def _artifacts(tracker: Any, settings: MlflowSettings, state: Any, summary: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_dict(summary, "metrics.json")  # metrics.json itself is written after the last hook
    if not settings.artifacts:
        return
    for name in trackers.ARTIFACTS:
        path = state.output_dir / name
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=name)
        elif path.is_file():
            mlflow.log_artifact(str(path))


TRACKER = trackers.TrackerHooks("mlflow", MlflowSettings, _tracker, _artifacts)


@hookimpl
def peftkit_register_plugin_configs():
    return [ConfigSection("mlflow", "log the run to MLflow (params, metrics, run folder as artifacts)", MlflowSettings)]


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
