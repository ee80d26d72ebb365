"""Built-in plugins are plugins like any other: every module under plugins/ imports from peftkit only the
public API (names in ``peftkit.__all__``) and ``peftkit.kit``, never a private core module and never
another built-in plugin — imports inside functions included. A third-party plugin could do the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import peftkit
import peftkit.kit

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
PKG_KIT = ROOT / "peftkit" / "kit"


def imported(tree: ast.AST, module: str, is_pkg: bool) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, names)`` of every import in ``tree``; ``names`` is empty for ``import x``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts[: len(parts) - node.level + is_pkg]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.append((node.lineno, base, [alias.name for alias in node.names]))
    return out


def violations(module: str, source: str, *, is_pkg: bool = False) -> list[str]:
    """What ``module`` imports that a third-party plugin could not rely on.

    ``module`` is a built-in's (``peftkit_plugins.<plugin>...``: its own folder is its package) or a
    third-party plugin's (its top-level package is its own).
    """
    parts = module.split(".")
    plugin = ".".join(parts[:2]) if parts[0] == "peftkit_plugins" else parts[0]
    public, kit = set(peftkit.__all__), set(peftkit.kit.__all__)
    bad = []
    for line, target, names in imported(ast.parse(source), module, is_pkg):
        top = target.split(".")[0]
        where = f"{module}:{line}"
        if top == "plugins":
            bad.append(f"{where} imports {target!r}: the installed package is peftkit_plugins, never `plugins`")
        elif top == "peftkit_plugins" and target != plugin and not target.startswith(plugin + "."):
            bad.append(f"{where} imports {target!r}, another built-in plugin; shared code belongs in peftkit.kit")
        elif target == "peftkit":
            private = [n for n in names if n not in public and n != "kit"] if names else []
            if private or not names:
                what = ", ".join(private) or "the package as a whole"
                bad.append(f"{where} imports {what} from peftkit, which is not in peftkit.__all__")
        elif target == "peftkit.kit":
            private = [n for n in names if n not in kit and not (PKG_KIT / f"{n}.py").is_file()]
            if private:
                bad.append(f"{where} imports {', '.join(private)} from peftkit.kit, which is not in its __all__")
        elif top == "peftkit" and not target.startswith("peftkit.kit."):
            bad.append(f"{where} imports {target!r}, a private core module: use peftkit's API or peftkit.kit")
    return bad


def plugin_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PLUGINS.rglob("*.py")):
        parts = ["peftkit_plugins", *path.relative_to(PLUGINS).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


MODULES = plugin_modules()


def test_the_walk_finds_every_plugin_folder():
    folders = {p.name for p in PLUGINS.iterdir() if (p / "__init__.py").is_file()}
    assert folders and folders == {m.split(".")[1] for m, _ in MODULES if m.count(".")}


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_a_builtin_plugin_imports_only_the_public_api_and_the_kit(module, path):
    bad = violations(module, path.read_text(encoding="utf-8"), is_pkg=path.name == "__init__.py")
    assert not bad, "\n".join(bad)


def test_the_check_catches_every_kind_of_forbidden_import():
    source = "\n".join(
        [
            "from peftkit import hookimpl, Recipe",  # fine: both in __all__
            "from peftkit.kit import PeftMethod",  # fine
            "from peftkit.kit.conformance import check_method",  # fine: a kit module
            "from . import config",  # fine: its own folder
            "from peftkit import run_dir",  # 1: not in __all__
            "import peftkit.build.model",  # 2: core internals
            "def later():",
            "    from peftkit.train.loop import run",  # 3: lazy, still counts
            "    from peftkit_plugins.full.method import FullMethod",  # 4: another plugin
            "    from ..full import method",  # 5: another plugin, relatively
            "    from peftkit.kit import _private",  # 6: not in the kit's __all__
            "    import plugins.lora",  # 7: the bare folder name
        ]
    )
    bad = violations("peftkit_plugins.bitfit.method", source)
    assert len(bad) == 7, "\n".join(bad)
    assert "peftkit_plugins.bitfit.method:8 imports 'peftkit.train.loop'" in bad[2]
    assert "'peftkit_plugins.full'" in bad[4] and "_private" in bad[5]


def test_the_new_plugin_scaffold_and_the_tutorial_package_follow_the_same_rule():
    """What peftkit tells plugin authors to write imports only what they may rely on."""
    from peftkit.kit.scaffold import render_files

    sources = {
        f"peftkit_my_method.{Path(rel).stem}".removesuffix(".__init__"): text
        for rel, text in render_files("my-method").items()
        if rel.startswith("peftkit_my_method/")
    }
    hello = ROOT / "docs" / "examples" / "peftkit-hello" / "peftkit_hello"
    sources.update({f"peftkit_hello.{p.stem}".removesuffix(".__init__"): p.read_text() for p in hello.glob("*.py")})
    sources["loha"] = (ROOT / "docs" / "examples" / "loha" / "loha.py").read_text()
    assert len(sources) == 7
    bad = [line for module, text in sources.items() for line in violations(module, text)]
    assert not bad, "\n".join(bad)
