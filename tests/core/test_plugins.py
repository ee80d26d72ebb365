"""Plugin discovery: entry points for built-ins and third parties, disabling, broken plugins, duplicates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import peftkit
from peftkit.errors import RecipeError
from peftkit.kit.tiny import tiny_recipe
from peftkit.plugin.registry import build_registry, list_plugins, owner
from peftkit.recipe import validate

REPO = Path(__file__).resolve().parents[2]

THIRD_PARTY = """
from peftkit import hookimpl, Example
from pydantic import BaseModel, ConfigDict, Field
import numpy as np


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(48, gt=0, description="rows per split")


class Parity:
    name = "acme/parity"
    summary = "label = whether the word 'good' appears"
    params_model = Params
    metric = "accuracy"
    splits = ("train", "dev")

    def label_names(self, params):
        return ["no", "yes"]

    def load_split(self, params, split):
        words = ["good", "bad", "the", "movie"]
        rows = []
        for i in range(params.n):
            text = " ".join(words[(i + k) % 4] for k in range(1 + i % 3))
            rows.append(Example(text=text, label=int("good" in text), id=i))
        return rows

    def compute_metrics(self, predictions, references):
        return {"accuracy": float((np.asarray(predictions) == np.asarray(references)).mean())}

    def prediction_file(self, params):
        return "parity.jsonl"

    def format_prediction(self, example, label_id, params):
        return {"id": example.id, "label": self.label_names(params)[label_id]}


CALLS = []


@hookimpl
def peftkit_register_tasks():
    return [Parity()]


@hookimpl
def peftkit_on_step_end(state):
    CALLS.append(state.step)
"""


def install_fake_dist(root: Path, name: str, module_code: str, version: str = "0.1") -> None:
    """Lay out a package + dist-info the way pip would, so importlib.metadata finds the entry point."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(module_code)
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[peftkit]\n{name} = {name}\n")


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    root = tmp_path / "site"
    install_fake_dist(root, "acme_peftkit", THIRD_PARTY)
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("acme_peftkit", None)


def test_every_plugin_folder_has_entry_point_and_package():
    text = (REPO / "pyproject.toml").read_text()
    folders = sorted(p.name for p in (REPO / "plugins").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders
    for name in folders:
        assert re.search(rf'^{name} = "peftkit_plugins\.{name}"$', text, re.M), f"plugins/{name} has no entry point"
        assert f'"peftkit_plugins.{name}"' in text.split("packages = [")[1].split("]")[0], (
            f"plugins/{name} not in packages"
        )
    # and the other way round: no entry point names a built-in folder that is gone
    listed = re.findall(r'^[\w-]+ = "peftkit_plugins\.(\w+)"$', text, re.M)
    assert sorted(listed) == folders, f"entry points without a plugins/ folder: {sorted(set(listed) - set(folders))}"


def test_builtins_are_entry_points_of_the_peftkit_distribution():
    reg = build_registry()
    assert reg.plugins["lora"].distribution == "peftkit" and reg.plugins["lora"].methods == ["lora"]
    assert "text-classification" in reg.tasks and {"local", "hub"} <= set(reg.sources)


def test_third_party_plugin_is_discovered_listed_and_used(third_party, tiny_bert, tmp_path):
    reg = build_registry()
    info = reg.plugins["acme_peftkit"]
    assert info.distribution == "acme_peftkit" and info.version == "0.1"
    assert info.tasks == ["acme/parity"] and "peftkit_on_step_end" in info.hooks
    listed = {p["name"]: p for p in list_plugins(reg)}
    assert listed["acme_peftkit"]["tasks"] == ["acme/parity"]

    data = tiny_recipe(tiny_bert, {"train": "x", "dev": "x", "test": "x"}, tmp_path / "run", max_steps=4)
    data["task"] = {"name": "acme/parity", "params": {"n": 32}}
    recipe = validate(data, registry=reg)
    from peftkit.train.loop import run

    summary = run(recipe, registry=reg)
    import acme_peftkit

    assert acme_peftkit.CALLS == [1, 2, 3, 4]
    assert summary["task"] == "acme/parity" and "accuracy" in summary["final"]


def test_peftkit_plugins_cli_lists_third_party(third_party):
    env = {**os.environ, "PYTHONPATH": str(third_party)}
    out = subprocess.run(
        [sys.executable, "-m", "peftkit", "plugins"], capture_output=True, text=True, env=env, check=True
    )
    names = {p["name"]: p for p in json.loads(out.stdout)}
    assert names["acme_peftkit"]["tasks"] == ["acme/parity"] and names["lora"]["distribution"] == "peftkit"


def test_peftkit_plugins_shows_every_summary_and_the_packaged_models_licences(capsys):
    from peftkit.cli import main

    assert main(["plugins"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    packaged = listed["packaged"]["summaries"]["model_sources"]["packaged"]
    for model in ("multilingual-e5-small (licence: MIT)", "gemma-3-270m (licence: Gemma Terms of Use"):
        assert model in packaged
    assert listed["lora"]["summaries"]["methods"]["lora"].startswith("LoRA")
    assert set(listed["causal_lm"]["summaries"]) == {"tasks", "objectives"}


def test_disable_plugins_by_name(monkeypatch):
    monkeypatch.setenv("PEFTKIT_DISABLE_PLUGINS", "lora, tensorboard")
    reg = build_registry()
    assert "lora" not in reg.methods and "tensorboard" not in reg.plugins and "textcls" in reg.plugins


def test_disabled_plugins_are_listed_as_disabled(monkeypatch):
    monkeypatch.setenv("PEFTKIT_DISABLE_PLUGINS", "tensorboard")
    listed = {p["name"]: p for p in list_plugins(build_registry())}
    assert listed["tensorboard"] == {
        "name": "tensorboard",
        "distribution": "peftkit",
        "version": peftkit.__version__,
        "module": "peftkit_plugins.tensorboard",
        "disabled": "PEFTKIT_DISABLE_PLUGINS",
    }
    assert "disabled" not in listed["lora"] and listed["lora"]["methods"] == ["lora"]


def test_owner_names_the_plugin_and_its_distribution():
    reg = build_registry()
    assert owner(reg, "methods", "lora") == f"plugin 'lora' (distribution peftkit {peftkit.__version__})"
    assert owner(reg, "tasks", "clue/afqmc").startswith("plugin 'clue' (distribution peftkit ")
    assert owner(reg, "methods", "no-such-method") == ""


def test_broken_plugin_is_reported_and_others_work(tmp_path, monkeypatch, tiny_bert, tiny_data):
    root = tmp_path / "site"
    install_fake_dist(root, "broken_plug", "import not_a_real_module_xyz\n")
    monkeypatch.syspath_prepend(str(root))
    reg = build_registry()
    assert "ModuleNotFoundError" in reg.broken["broken_plug"] and "lora" in reg.methods
    assert {"name": "broken_plug", "error": reg.broken["broken_plug"]} in list_plugins(reg)
    data = tiny_recipe(tiny_bert, tiny_data, tmp_path / "o", method="fancy")
    with pytest.raises(RecipeError) as info:
        validate(data, registry=reg)
    assert "plugins that failed to load and may provide it: broken_plug" in str(info.value)


def test_a_name_clash_leaves_the_newcomer_out_and_keeps_the_builtin(tmp_path, monkeypatch):
    root = tmp_path / "site"
    code = textwrap.dedent("""
        from peftkit import hookimpl
        from peftkit_plugins.lora import peftkit_register_methods as _lora

        @hookimpl
        def peftkit_register_methods():
            return _lora()
    """)
    install_fake_dist(root, "aaa_clone", code)  # sorts before "lora": built-ins still load first
    monkeypatch.syspath_prepend(str(root))
    reg = build_registry()
    assert reg.owners[("methods", "lora")] == "lora" and "aaa_clone" not in reg.plugins
    assert reg.broken["aaa_clone"] == (
        "method name 'lora' is already registered by plugin 'lora'; rename it, "
        "or set PEFTKIT_DISABLE_PLUGINS=lora to use this one instead"
    )


def _plugin(**hooks):
    """A plugin object whose hookimpls are the given functions (names as given)."""
    from peftkit import hookimpl

    return type("P", (), {name: staticmethod(hookimpl(fn)) for name, fn in hooks.items()})()


class _Task:
    def __init__(self, **drop):
        from pydantic import BaseModel

        self.name, self.summary, self.params_model, self.metric, self.splits = (
            "x/t",
            "t",
            BaseModel,
            "accuracy",
            ("train",),
        )
        for k in drop:
            delattr(self, k)

    def label_names(self, params):
        return ["a", "b"]

    def load_split(self, params, split):
        return []

    def compute_metrics(self, predictions, references):
        return {"accuracy": 1.0}

    def prediction_file(self, params):
        return "p.json"

    def format_prediction(self, example, label_id, params):
        return {}


def _misspelt(state):
    pass


def _with(obj, **attrs):
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def _lora():
    import copy

    from peftkit.plugin.registry import get_registry

    m = copy.copy(get_registry().methods["lora"])
    m.name = "lora-copy"
    return m


@pytest.mark.parametrize(
    "hooks, error",
    [
        (
            {"peftkit_on_stepend": _misspelt},
            "implements unknown hook 'peftkit_on_stepend' (did you mean 'peftkit_on_step_end'?)",
        ),
        (
            {"peftkit_on_eval": lambda metric: None},  # the spec's argument is `metrics`
            "PluginValidationError: Plugin 'bad' for hook 'peftkit_on_eval'",
        ),
        (
            {"peftkit_model_ready": lambda model: None, "peftkit_on_eval": lambda metric: None},  # a good hook first
            "PluginValidationError: Plugin 'bad' for hook 'peftkit_on_eval'",
        ),
        ({"peftkit_register_tasks": lambda: _Task()}, "peftkit_register_tasks() returned _Task"),
        ({"peftkit_register_tasks": lambda: [_Task]}, "returned _Task, a class: register an instance (_Task())"),
        (
            {"peftkit_register_tasks": lambda: [_Task(metric=1)]},
            "returned _Task without metric, which a Task must have",
        ),
        ({"peftkit_register_tasks": lambda: 1 / 0}, "ZeroDivisionError: division by zero (test_plugins.py:"),
        (
            {"peftkit_register_tasks": lambda: [_with(_Task(), head="multiple_choice")]},
            "returned _Task with head 'multiple_choice', which is not one of ",  # the registered ones, in plugin order
        ),
        (
            {"peftkit_register_methods": lambda: [_with(_lora(), task_heads="sequence-classification")]},
            "with task_heads 'sequence-classification', not a set of task heads",
        ),
        (
            {"peftkit_register_methods": lambda: [_with(_lora(), task_heads={"sequence_classification"})]},
            "with task_heads naming 'sequence_classification', not one of ",
        ),
    ],
)
def test_a_plugin_that_cannot_be_used_is_left_out_with_its_reason(hooks, error):
    reg = build_registry(
        extra_plugins={"bad": _plugin(**hooks), "good": _plugin(peftkit_register_tasks=lambda: [_Task()])}
    )
    assert error in reg.broken["bad"], reg.broken
    assert "bad" not in reg.plugins and reg.tasks["x/t"] and reg.owners[("tasks", "x/t")] == "good"
    assert reg.pm.get_plugin("bad") is None  # none of its hooks runs
    assert all(
        i.plugin_name != "bad"
        for name in hooks
        if hasattr(reg.pm.hook, name)
        for i in getattr(reg.pm.hook, name).get_hookimpls()
    )
    assert reg.problems()[0].startswith("plugin 'bad' was not loaded: ")
    assert reg.problems()[0].endswith("PEFTKIT_DISABLE_PLUGINS=bad")


def test_an_unknown_name_in_disable_plugins_is_named(monkeypatch):
    monkeypatch.setenv("PEFTKIT_DISABLE_PLUGINS", "tensorbord,lora")
    reg = build_registry()
    assert reg.disabled == ["lora"] and reg.unknown_disabled == ["tensorbord"]
    (line,) = reg.problems()
    assert line.startswith(
        "PEFTKIT_DISABLE_PLUGINS names 'tensorbord', which no installed plugin is called (installed: "
    )


def test_every_command_works_and_warns_with_a_broken_plugin(tmp_path):
    root = tmp_path / "site"
    install_fake_dist(
        root, "hooklog", "from peftkit import hookimpl\n\n@hookimpl\ndef peftkit_on_epoch_end(state):\n    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "peftkit", *args], capture_output=True, text=True, env=env)

    listed = cli("plugins")
    assert listed.returncode == 0 and "warning" not in listed.stderr
    broken = {p["name"]: p for p in json.loads(listed.stdout)}["hooklog"]
    assert broken["error"].startswith("implements unknown hook 'peftkit_on_epoch_end'")
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    ok = cli("validate", recipe)
    assert ok.returncode == 0 and "warning: plugin 'hooklog' was not loaded: implements unknown hook" in ok.stderr
    strict = cli("validate", recipe, "--strict")
    assert strict.returncode == 2 and "plugin 'hooklog' was not loaded" in strict.stderr
    schema = cli("schema")
    assert schema.returncode == 0 and "warning: plugin 'hooklog'" in schema.stderr


def test_validate_and_plugins_do_not_import_torch():
    code = (
        "import sys, peftkit.cli as c; c.main(['plugins']); "
        "assert 'torch' not in sys.modules, 'torch imported'; assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_run_writes_plugin_problems_to_its_log(tiny_bert, tiny_data, tmp_path):
    from peftkit.train.loop import run

    reg = build_registry(extra_plugins={"hooklog": _plugin(peftkit_on_epoch_end=_misspelt)})
    run(validate(tiny_recipe(tiny_bert, tiny_data, tmp_path / "run", max_steps=2), registry=reg), registry=reg)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "WARNING plugin 'hooklog' was not loaded: implements unknown hook 'peftkit_on_epoch_end'" in log


def test_a_recipe_refused_by_a_plugin_names_the_plugin_and_the_recipe(tiny_bert, tiny_data, tmp_path):
    from peftkit import hookimpl
    from peftkit.recipe import load_recipe

    class Guard:
        @hookimpl
        def peftkit_configure(self, recipe):
            if recipe.train.batch_size > 4:
                raise RecipeError("train.batch_size: at most 4 on this cluster")

    reg = build_registry(extra_plugins={"guard": Guard()})
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(tiny_recipe(tiny_bert, tiny_data, tmp_path / "o")))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=reg)
    assert str(info.value).startswith(f"invalid recipe {path} (1 problem):")
    assert "train.batch_size: at most 4 on this cluster (refused by peftkit_configure in " in str(info.value)
    assert "test_plugins (test_plugins.py:" in str(info.value)


def test_bitsandbytes_kernel_fetch_warning_is_dropped():
    code = "import peft, bitsandbytes"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "gemm_4bit_forward" not in plain.stderr:
        pytest.skip("bitsandbytes does not warn on this CPU (no AVX512-BF16, or the kernel loaded)")
    ours = subprocess.run([sys.executable, "-c", "import peftkit; " + code], capture_output=True, text=True)
    assert ours.returncode == 0 and "gemm_4bit_forward" not in ours.stderr, ours.stderr[-2000:]


def test_peft_s_gradient_checkpointing_deprecation_warning_is_dropped(tiny_bert):
    code = (
        "import transformers, peft; m = transformers.AutoModelForSequenceClassification.from_pretrained("
        f"{str(tiny_bert)!r}, num_labels=2); peft.get_peft_model(m, peft.LoraConfig(target_modules=['query']))"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "is_gradient_checkpointing" not in plain.stderr:
        pytest.skip("this transformers/peft pair does not warn")
    ours = subprocess.run([sys.executable, "-c", "import peftkit; " + code], capture_output=True, text=True)
    assert ours.returncode == 0 and "is_gradient_checkpointing" not in ours.stderr, ours.stderr[-2000:]
