"""Every hook a peftkit plugin can implement.

Plugins implement hooks with :data:`peftkit.hookimpl` and are found through the ``peftkit``
entry-point group. Hooks are always called with keyword arguments, so an implementation may accept
only the arguments it needs. A misspelt hook name (a ``peftkit_`` function that matches no spec)
fails at start-up. Lifecycle hooks receive one :class:`peftkit.plugin.state.RunState`, so new fields can be
added later without breaking plugins.

Lifecycle hooks are ``peftkit_model_ready`` and the ``peftkit_on_*`` hooks. Where they live decides when they
fire:

- in a plugin module (or object) found through an entry point: in every run (within a recipe's ``plugins:``
  allow-list, only the listed plugins');
- on a Method, as the object in its optional ``hooks`` attribute: only in runs of that method. The run
  registers ``method.hooks`` when it starts and unregisters it when it ends, so a hook that belongs to a
  method (AdaLoRA's rank-budget schedule) needs no ``state.method.name`` check. Such an object may implement
  lifecycle hooks only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from peftkit.plugin.contracts import Method, ModelSource, Objective, PluginConfig, Task
from peftkit.plugin.state import RunState

if TYPE_CHECKING:  # pragma: no cover - typing only
    import argparse

hookspec = pluggy.HookspecMarker("peftkit")
hookimpl = pluggy.HookimplMarker("peftkit")


@hookspec
def peftkit_register_methods() -> list[Method]:
    """Called once when the plugin manager starts, to collect the methods a plugin provides.

    :return: Method objects; their names must be unique across all plugins.
    """


@hookspec
def peftkit_register_tasks() -> list[Task]:
    """Called once when the plugin manager starts, to collect the tasks a plugin provides.

    :return: Task objects; their names must be unique across all plugins.
    """


@hookspec
def peftkit_register_objectives() -> list[Objective]:
    """Called once when the plugin manager starts, to collect objectives (plugins implementing it load first:
    built-ins, then third parties, each group with its objective plugins first).

    :return: Objective objects; their names must be unique across all plugins, and at most one sets ``default``.
    """


@hookspec
def peftkit_register_model_sources() -> list[ModelSource]:
    """Called once when the plugin manager starts, to collect model sources (``scheme:reference``).

    :return: ModelSource objects; their schemes must be unique across all plugins.
    """


@hookspec
def peftkit_register_plugin_configs() -> list[PluginConfig]:
    """Called once when the plugin manager starts, to collect the recipe sections (``plugins_config.<name>``) that
    plugins take their settings from. A lifecycle plugin reads its section with
    ``peftkit.kit.plugin_settings(state, name, Model)``; a recipe without the section leaves the plugin off or at
    its defaults, as the plugin documents.

    :return: PluginConfig objects (e.g. ``peftkit.kit.ConfigSection``); their names must be unique across all plugins.
    """


@hookspec
def peftkit_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Called while the CLI is built, to add subcommands.

    :param subparsers: the ``argparse`` subparsers object; call ``subparsers.add_parser(...)`` and
        set ``func=callable(args) -> int`` as the parser default.
    """


@hookspec
def peftkit_configure(recipe: Any) -> None:
    """Called after a recipe validated and before anything is built; may inspect or adjust it.

    :param recipe: the validated :class:`peftkit.Recipe` (mutable); raise :class:`peftkit.errors.RecipeError` to refuse it.
    """


@hookspec
def peftkit_model_ready(model: Any, method: Method, recipe: Any) -> None:
    """Called after the method was applied to the base model, before training starts.

    :param model: the trainable model.
    :param method: the Method object that was applied.
    :param recipe: the validated recipe.
    """


@hookspec
def peftkit_on_train_begin(state: RunState) -> None:
    """Called once before the first training step (also after a resume).

    :param state: the run's state (recipe, model, optimizer, step counters, output_dir, ...).
    """


@hookspec
def peftkit_on_step_end(state: RunState) -> None:
    """Called after every optimizer step, after ``optimizer.step()`` and before gradients are zeroed.

    AdaLoRA's rank budget update runs here (it needs the gradients of this step), as a hook of the AdaLoRA
    method itself (``Method.hooks``), so it fires in AdaLoRA runs only.

    :param state: the run's state; ``state.step`` is the number of optimizer steps done,
        ``state.loss`` the mean training loss of this step, ``state.epoch_progress`` the share of the epoch
        trained. Set ``state.should_stop = True`` to end training.
    """


@hookspec
def peftkit_on_eval(state: RunState, metrics: dict[str, float]) -> None:
    """Called after each evaluation on the dev split.

    :param state: the run's state. At an epoch-end evaluation ``state.epoch`` is the epoch just finished
        (counting from 0) and ``state.epoch_progress`` is 1.0.
    :param metrics: this evaluation's metrics (``eval_loss`` and the task's metrics).
    """


@hookspec
def peftkit_on_save(state: RunState, path: Any) -> None:
    """Called after the trained model (adapter or full weights) was written.

    :param state: the run's state.
    :param path: the folder that was written (a ``pathlib.Path``).
    """


@hookspec
def peftkit_on_save_checkpoint(state: RunState, extra: dict[str, Any]) -> None:
    """Called when a resumable checkpoint is written: add what your plugin needs to resume exactly.

    Trainable weights, optimizer, scheduler, RNGs and the data position are saved by peftkit; state kept
    anywhere else is lost on ``--resume`` unless a plugin saves it here (AdaLoRA's importance estimates and
    rank pattern are).

    :param state: the run's state.
    :param extra: a dict stored in the checkpoint; add entries under a key unique to your plugin. Values
        must load with ``torch.load(weights_only=True)``: tensors, numbers, strings, bools, None, and lists,
        tuples and dicts of these.
    """


@hookspec
def peftkit_on_load_checkpoint(state: RunState, extra: dict[str, Any]) -> None:
    """Called on ``--resume`` after weights, optimizer, scheduler and RNGs were restored, before training goes on.

    :param state: the run's state; ``state.step`` is the checkpoint's step.
    :param extra: what the ``peftkit_on_save_checkpoint`` implementations stored (empty for older checkpoints).
    """


@hookspec
def peftkit_on_train_end(state: RunState) -> None:
    """Called once after training and the final evaluation, before metrics.json is written.

    :param state: the run's state; ``state.summary`` may be extended with extra facts. ``state.model`` and
        ``state.optimizer`` are None by now: they were released before the final evaluation loaded the saved
        model (in ``state.output_dir / "model"``).
    """
