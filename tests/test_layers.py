"""The house in layers: import-linter's contracts (pyproject.toml) hold, and no import cycle exists in
peftkit/ or plugins/ — imports inside functions and under ``TYPE_CHECKING`` count, since each is an edge
a later refactor can turn into a real import-time cycle.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# where each top-level import name lives in the checkout (pyproject's package-dir mapping)
PACKAGES = {"peftkit": ROOT / "peftkit", "peftkit_plugins": ROOT / "plugins"}
LINT = "from importlinter.cli import lint_imports_command as main; main()"


def lint_imports(cwd: Path, *extra: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """Run import-linter in a fresh interpreter (its graph cache and config are process-global)."""
    env = None if pythonpath is None else dict(os.environ, PYTHONPATH=str(pythonpath))
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


# ------------------------------------------------------------------------------------- import-linter


def test_import_linter_contracts_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, f"an import breaks the layers (pyproject.toml [tool.importlinter]):\n{proc.stdout}"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = len(config["tool"]["importlinter"]["contracts"])
    assert f"Contracts: {contracts} kept, 0 broken" in proc.stdout, proc.stdout


def test_import_linter_sees_a_back_edge_inside_a_function(tmp_path):
    """The guarantee the contracts rest on: a lazy import in a function body is still an import."""
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "high.py").write_text("from demo import low\n")
    (pkg / "low.py").write_text("def later():\n    from demo import high\n    return high\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = demo\n\n[importlinter:contract:1]\nname = demo layers\n"
        "type = layers\ncontainers = demo\nlayers =\n    high\n    low\n"
    )
    proc = lint_imports(tmp_path, pythonpath=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "demo.low -> demo.high" in proc.stdout, proc.stdout


def layer_order() -> list[str]:
    """The layers of peftkit's contract, top first, as in pyproject.toml: ``"compare | (serve)"`` becomes
    ``"compare|serve"``, an optional layer (in parentheses) kept only once its module exists."""

    def exists(name: str) -> bool:
        return (ROOT / "peftkit" / name).is_dir() or (ROOT / "peftkit" / f"{name}.py").is_file()

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    out = []
    for layer in contract["layers"]:
        names = [n.strip() for n in layer.split("|")]
        kept = [n.strip("()") for n in names if not n.startswith("(") or exists(n.strip("()"))]
        out.append("|".join(kept))
    return [layer for layer in out if layer]


def test_concepts_page_draws_the_layers_of_the_contract_in_order():
    """Each layer opens a line of the diagram (``train/``, ``cli.py``), top first; siblings share a line."""
    page = (ROOT / "docs" / "concepts.md").read_text(encoding="utf-8")
    diagram = page[page.index("<!-- layers -->") : page.index("<!-- /layers -->")].splitlines()
    rows = []
    for layer in layer_order():
        first, *siblings = layer.split("|")
        opens = re.compile(rf"^\W*{re.escape(first)}(?:/|\.py)")
        row = next((i for i, line in enumerate(diagram) if opens.match(line)), None)
        assert row is not None, f"docs/concepts.md's layer diagram has no line for {first!r} (pyproject.toml)"
        for name in siblings:
            assert f"{name}/" in diagram[row], f"docs/concepts.md: {name!r} belongs on the line of {first!r}"
        rows.append(row)
    assert rows == sorted(rows), f"docs/concepts.md draws the layers out of order; top first: {layer_order()}"


# ---------------------------------------------------------------------------------------------- cycles


def module_files() -> dict[str, Path]:
    """Dotted module name → file, for every module of peftkit and peftkit_plugins in the checkout."""
    out = {}
    for top, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``module`` imports anywhere in its file (function bodies included).

    ``from a import b`` is an edge to ``a.b`` when that is a module, else to ``a``.
    """
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_pkg]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != module}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return f"{', '.join(component)} ({'; '.join(edges)})"


def test_no_import_cycle_in_peftkit_or_plugins():
    files = module_files()
    graph = import_graph(files)
    assert "peftkit.cli" in graph and "peftkit_plugins.lora" in graph  # the walk found the tree
    found = [describe(graph, c) for c in cycles(graph)]
    assert not found, "import cycles (lazy imports count):\n  " + "\n  ".join(found)


def test_cycle_finder_sees_a_cycle_closed_by_an_import_inside_a_function(tmp_path):
    src = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from . import c\n",
        "pkg/c.py": textwrap.dedent(
            """
            def later():
                if True:
                    from .a import thing  # the back-edge, three levels deep
                return thing
            """
        ),
        "pkg/d.py": "import pkg.a\n",  # imports into the cycle, not part of it
    }
    for rel, text in src.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    files = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in tmp_path.rglob("*.py")
    }
    assert cycles(import_graph(files)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_every_subpackage_opens_with_one_line_saying_its_job():
    """A newcomer reads the folder names and then each ``__init__``'s first line (docs/concepts.md)."""
    folders = [p for top in PACKAGES.values() for p in [top, *top.rglob("*")] if p.is_dir()]
    folders = [p for p in folders if p.name != "__pycache__" and any(p.glob("*.py"))]
    assert len(folders) > 10
    for folder in folders:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder.relative_to(ROOT)} has modules but no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        assert len(first) > 20, f"{init.relative_to(ROOT)} does not open with a line saying what the package is for"
