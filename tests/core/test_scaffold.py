"""``peftkit new-plugin``: names, refusals, and a generated package that works as generated.

The generated package is imported in-process here and registered next to the built-ins; its own
test file is run inside a fresh virtual environment by tests/test_example_plugin.py.
"""

from __future__ import annotations

import ast
import importlib
import sys

import pytest
import tomllib

import peftkit
from peftkit.cli import main
from peftkit.errors import PeftkitError
from peftkit.kit.scaffold import new_plugin, normalise_name, render_files, substitutions


@pytest.mark.parametrize("given, short", [("my-method", "my-method"), ("peftkit-loha2", "loha2"), ("x", "x")])
def test_valid_names(given, short):
    assert normalise_name(given) == short


@pytest.mark.parametrize("bad", ["My-Method", "my_method", "-x", "x--y", "2x", "", "peftkit-"])
def test_invalid_names_are_refused_with_the_rule(bad):
    with pytest.raises(PeftkitError, match="lowercase letters, digits and single hyphens"):
        normalise_name(bad)


def test_substitutions_make_importable_names():
    subs = substitutions("my-method")
    assert subs == {
        "name": "my-method",
        "dist": "peftkit-my-method",
        "pkg": "peftkit_my_method",
        "cls": "MyMethod",
        "task": "my-method/jsonl",
    }


def test_generated_files_parse_and_declare_the_entry_point():
    files = render_files("my-method")
    assert set(files) == {
        "pyproject.toml",
        "README.md",
        "peftkit_my_method/__init__.py",
        "peftkit_my_method/method.py",
        "peftkit_my_method/task.py",
        "tests/test_peftkit_my_method.py",
    }
    for path, text in files.items():
        if path.endswith(".py"):
            ast.parse(text, filename=path)
        assert "$" not in text.replace("$ ", ""), f"{path} has an unfilled template variable"
    meta = tomllib.loads(files["pyproject.toml"])
    assert meta["project"]["name"] == "peftkit-my-method"
    assert meta["project"]["entry-points"]["peftkit"] == {"my-method": "peftkit_my_method"}
    assert meta["tool"]["setuptools"]["packages"] == ["peftkit_my_method"]


def test_refuses_an_existing_folder_and_a_taken_name(tmp_path):
    new_plugin("dupe", tmp_path)
    with pytest.raises(PeftkitError, match="already exists"):
        new_plugin("dupe", tmp_path)
    with pytest.raises(PeftkitError) as info:
        new_plugin("lora", tmp_path)
    assert str(info.value) == (
        "cannot create plugin 'lora': method 'lora' is already registered by plugin 'lora' "
        f"(distribution peftkit {peftkit.__version__}); choose another name"
    )
    assert not (tmp_path / "peftkit-lora").exists()


def test_a_taken_task_or_plugin_name_names_its_plugin(tmp_path, monkeypatch):
    """The generated task ``NAME/jsonl`` and the entry point ``NAME`` must be free too, disabled plugins included."""
    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    monkeypatch.setitem(reg.owners, ("tasks", "acme/jsonl"), "textcls")
    with pytest.raises(
        PeftkitError, match=r"task 'acme/jsonl' is already registered by plugin 'textcls' \(distribution peftkit "
    ):
        new_plugin("acme", tmp_path)
    with pytest.raises(
        PeftkitError, match=r"a plugin named 'tensorboard' is already installed \(distribution peftkit "
    ):
        new_plugin("tensorboard", tmp_path)
    monkeypatch.setenv("PEFTKIT_DISABLE_PLUGINS", "tensorboard")
    with pytest.raises(
        PeftkitError, match="'tensorboard' is already installed .*, disabled by PEFTKIT_DISABLE_PLUGINS"
    ):
        new_plugin("tensorboard", tmp_path)


def test_cli_creates_the_package_and_reports_errors(tmp_path, capsys):
    assert main(["new-plugin", "cli-made", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "peftkit-cli-made" / "peftkit_cli_made" / "method.py").is_file()
    assert "pip install -e" in capsys.readouterr().out
    assert main(["new-plugin", "cli-made", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.fixture
def generated(tmp_path):
    """The generated package, imported from its folder (removed from sys.modules afterwards)."""
    root = new_plugin("gen-demo", tmp_path / "src")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("peftkit_gen_demo")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith("peftkit_gen_demo")]:
            del sys.modules[name]


def test_generated_plugin_registers_and_its_method_passes_conformance(generated, tmp_path):
    from peftkit.kit.conformance import check_method
    from peftkit.plugin.registry import build_registry

    reg = build_registry(extra_plugins={"gen-demo": generated})
    assert "gen-demo" in reg.methods and "gen-demo/jsonl" in reg.tasks
    assert reg.plugins["gen-demo"].hooks == ["peftkit_register_methods", "peftkit_register_tasks"]
    report = check_method(reg.methods["gen-demo"], tmp_path / "conformance", models=("bert",))["bert"]
    assert 0 < report.trainable < report.total and report.loss_after < report.loss_before


def test_generated_task_reads_jsonl_and_validates_in_a_recipe(generated, tmp_path, tiny_bert):
    from peftkit.kit.tiny import make_text_dataset
    from peftkit.plugin.registry import build_registry
    from peftkit.recipe import validate

    reg = build_registry(extra_plugins={"gen-demo": generated})
    data = make_text_dataset(tmp_path / "data", n_train=8, n_dev=4, n_test=2)
    task = reg.tasks["gen-demo/jsonl"]
    params = task.params_model(train_file=str(data["train"]), test_file=str(data["test"]), labels=["neg", "pos"])
    train = task.load_split(params, "train")
    assert len(train) == 8 and {e.label for e in train} == {0, 1}
    assert all(e.label is None for e in task.load_split(params, "test"))
    recipe = validate(
        {
            "model": {"source": f"local:{tiny_bert}"},
            "method": {"name": "gen-demo", "params": {"r": 4}},
            "task": {"name": "gen-demo/jsonl", "params": {"train_file": str(data["train"]), "labels": ["neg", "pos"]}},
            "output_dir": str(tmp_path / "run"),
        },
        registry=reg,
    )
    assert recipe.method.name == "gen-demo"
