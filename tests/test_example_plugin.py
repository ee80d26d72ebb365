"""The "Writing a plugin" tutorial's package (docs/examples/peftkit-hello), installed for real.

It is pip-installed into a fresh virtual environment, where ``peftkit plugins`` must list it, its own
tests (which run peftkit's conformance suite) must pass, and a recipe using its method and task
must train. The tutorial includes the package's files verbatim, so the docs cannot drift from code
that works.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "peftkit-hello"
pytestmark = pytest.mark.integration  # a virtual environment, a pip install and real training runs: > 15 s


def make_env(root: Path) -> Path:
    """A new virtual environment that sees this interpreter's packages (torch, peftkit) but installs its own.

    ``--system-site-packages`` would expose the *base* interpreter, not this one's virtual
    environment, so a ``.pth`` file adds this environment's site-packages (with their own .pth
    files, e.g. peftkit's editable install) behind the new environment's.
    """
    env_dir = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    new_site = subprocess.run(
        [str(py), "-c", "import site; print(site.getsitepackages()[0])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
    (Path(new_site) / "_outer_env.pth").write_text("\n".join(lines) + "\n")
    return py


def pip_install(py: Path, package: Path) -> None:
    """Install ``package`` without touching its dependencies (they come from the outer environment).

    Offline when setuptools is importable here (Python <= 3.11 virtual environments ship it);
    otherwise pip fetches it from the package index into an isolated build environment.
    """
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", *offline, "-q", str(package)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def peftkit(py: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "peftkit", *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def hello_env(tmp_path_factory) -> tuple[Path, Path]:
    """(python of the environment with peftkit-hello installed, the installed source copy)."""
    root = tmp_path_factory.mktemp("hello-env")
    src = root / "peftkit-hello"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    py = make_env(root)
    pip_install(py, src)
    return py, src


def test_peftkit_plugins_lists_the_installed_plugin(hello_env):
    py, _ = hello_env
    proc = peftkit(py, "plugins")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    hello = plugins.get("hello")
    assert hello is not None, f"plugin 'hello' not listed; got {sorted(plugins)}"
    assert hello["distribution"] == "peftkit-hello" and hello["version"] == "0.1.0"
    assert hello["methods"] == ["lnfit"] and hello["tasks"] == ["hello/keywords"]
    assert "lora" in plugins, "the built-in plugins must still load beside it"
    # the plugin is there because of the install, not because the outer environment has it
    outer = subprocess.run([sys.executable, "-m", "peftkit", "plugins"], capture_output=True, text=True, timeout=300)
    assert "hello" not in {p["name"] for p in json.loads(outer.stdout)}


def test_the_plugin_passes_its_tests_and_the_conformance_suite(hello_env):
    py, src = hello_env
    proc = subprocess.run(
        [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(src / "tests")],
        capture_output=True,
        text=True,
        cwd=src,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout


def test_a_tiny_recipe_with_its_method_and_task_trains(hello_env, tmp_path):
    py, _ = hello_env
    model = tmp_path / "model"
    subprocess.run(
        [str(py), "-c", f"from peftkit.kit.tiny import make_tiny_bert; make_tiny_bert({str(model)!r})"],
        check=True,
        timeout=300,
    )
    recipe = {
        "model": {"source": f"local:{model}"},
        "method": {"name": "lnfit"},
        "task": {"name": "hello/keywords", "params": {"train_size": 64, "dev_size": 32, "test_size": 8}},
        "data": {"max_length": 16},
        "train": {"epochs": 1, "batch_size": 16, "seed": 0},
        "eval": {"predict": True},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    assert peftkit(py, "validate", "recipe.yaml", cwd=tmp_path).returncode == 0
    proc = peftkit(py, "run", "recipe.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "lnfit" and metrics["task"] == "hello/keywords"
    assert 0.0 <= metrics["final"]["accuracy"] <= 1.0
    # tiny BERT: 5 LayerNorms (embeddings + 2 per layer) x (scale, shift) + classifier (weight, bias)
    assert metrics["method_facts"] == {"trained_tensors": 12}
    assert metrics["params"]["trainable"] < metrics["params"]["total"] / 10
    predictions = (tmp_path / "run" / "keywords_predict.jsonl").read_text().splitlines()
    assert len(predictions) == 8 and {json.loads(p)["label"] for p in predictions} <= {"neg", "pos"}


def test_a_package_from_new_plugin_passes_its_own_tests_once_installed(tmp_path):
    """`peftkit new-plugin` output, untouched: installed, listed, and its generated tests (conformance
    on tiny BERT and Llama, the task, a tiny run) pass."""
    py = make_env(tmp_path)
    created = peftkit(py, "new-plugin", "fresh-method", "--dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    src = tmp_path / "peftkit-fresh-method"
    pip_install(py, src)
    listed = {p["name"]: p for p in json.loads(peftkit(py, "plugins").stdout)}
    assert listed["fresh-method"]["methods"] == ["fresh-method"]
    assert listed["fresh-method"]["tasks"] == ["fresh-method/jsonl"]
    proc = subprocess.run(
        [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(src / "tests")],
        capture_output=True,
        text=True,
        cwd=src,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
