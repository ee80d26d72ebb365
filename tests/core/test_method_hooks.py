"""Lifecycle hooks a method carries (``Method.hooks``) fire only in runs of that method; what hooks see of the
epoch; and the run folder's record of which plugin, distribution and version provided its method and task."""

from __future__ import annotations

import importlib.metadata

import pytest

from peftkit import hookimpl
from peftkit.errors import PluginError
from peftkit.kit.tiny import tiny_recipe
from peftkit.plugin.registry import build_registry
from peftkit.recipe import validate
from peftkit.train.loop import run


class Recorder:
    """A method's own hooks: what they saw, call by call."""

    def __init__(self):
        self.steps, self.evals, self.begins = [], [], 0

    @hookimpl
    def peftkit_on_train_begin(self, state):
        self.begins += 1

    @hookimpl
    def peftkit_on_step_end(self, state):
        self.steps.append((state.step, state.epoch, round(state.epoch_progress, 4)))

    @hookimpl
    def peftkit_on_eval(self, state, metrics):
        self.evals.append((state.step, state.epoch, state.epoch_progress, state.epochs_done))


class WithHooks:
    """An installed method under another name, carrying ``hooks`` (every other attribute is the original's)."""

    def __init__(self, inner, name, hooks):
        self._inner, self.name, self.hooks = inner, name, hooks

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


class MethodPlugin:
    def __init__(self, method):
        self.method = method

    @hookimpl
    def peftkit_register_methods(self):
        return [self.method]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_bert, tiny_data):
    """A registry where the method `probed` (LoRA, carrying a Recorder) comes from the plugin `probe`."""
    lora = build_registry().methods["lora"]
    hooks = Recorder()
    reg = build_registry(extra_plugins={"probe": MethodPlugin(WithHooks(lora, "probed", hooks))})
    d = tmp_path_factory.mktemp("mh")
    m = run(
        validate(tiny_recipe(tiny_bert, tiny_data, d / "probed", method="probed", batch_size=16), registry=reg),
        registry=reg,
    )
    return reg, hooks, m, d


def test_a_methods_hooks_fire_in_its_runs_and_are_unregistered_after(recorded):
    reg, hooks, m, _ = recorded
    assert hooks.begins == 1 and [s for s, _, _ in hooks.steps] == list(range(1, 13))  # 2 epochs of 6 steps
    assert not reg.pm.is_registered(hooks)  # only for the duration of the run


def test_a_methods_hooks_do_not_fire_in_runs_of_another_method(recorded, tiny_bert, tiny_data):
    reg, hooks, _, d = recorded
    before = (hooks.begins, len(hooks.steps))
    run(validate(tiny_recipe(tiny_bert, tiny_data, d / "lora", method="lora", max_steps=3), registry=reg), registry=reg)
    assert (hooks.begins, len(hooks.steps)) == before


def test_epoch_and_epoch_progress_as_hooks_see_them(recorded):
    _, hooks, m, _ = recorded
    # 6 steps an epoch: progress after each step of the first epoch, then the second's, epoch counting from 0
    assert hooks.steps[:6] == [(k, 0, round(k / 6, 4)) for k in range(1, 7)]
    assert hooks.steps[6] == (7, 1, round(1 / 6, 4))
    # at an epoch-end evaluation, epoch names the epoch just finished, its progress complete
    assert hooks.evals == [(6, 0, 1.0, 1.0), (12, 1, 1.0, 2.0)]
    assert [h["epoch"] for h in m["history"]] == [1.0, 2.0]


def test_the_run_records_who_provided_its_method_and_task(recorded):
    reg, _, m, _ = recorded
    task = m["plugins"]["task"]
    assert task["name"] == "text-classification" and "text-classification" in reg.plugins[task["plugin"]].tasks
    assert (task["distribution"], task["version"]) == ("peftkit", importlib.metadata.version("peftkit"))
    # registered in code, not installed: the plugin is known, its distribution is not
    assert m["plugins"]["method"] == {"name": "probed", "plugin": "probe", "distribution": None, "version": None}


def test_a_methods_hooks_may_only_be_lifecycle_hooks(tmp_path, tiny_bert, tiny_data):
    class Registers:
        @hookimpl
        def peftkit_register_tasks(self):
            return []

    lora = build_registry().methods["lora"]
    reg = build_registry(extra_plugins={"bad": MethodPlugin(WithHooks(lora, "bad-hooks", Registers()))})
    recipe = validate(tiny_recipe(tiny_bert, tiny_data, tmp_path / "o", method="bad-hooks", max_steps=1), registry=reg)
    with pytest.raises(PluginError, match=r"method 'bad-hooks': its hooks object implements peftkit_register_tasks"):
        run(recipe, registry=reg)
    assert not any(p for p in reg.pm.get_plugins() if isinstance(p, Registers))
