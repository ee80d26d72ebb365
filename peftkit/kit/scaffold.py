"""``peftkit new-plugin NAME``: write a third-party plugin package that works as generated.

The package registers one method (``NAME``: LoRA on the attention projections through
:class:`peftkit.kit.peft_method.PeftMethod`, the shortest path to any method peft provides) and one task
(``NAME/jsonl``: classification of your own jsonl files), with tests that run peftkit's conformance
suite and a tiny end-to-end run. Install it with ``pip install -e DIR`` and
it shows up in ``peftkit plugins``, exactly like the built-ins.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from peftkit.errors import PeftkitError
from peftkit.kit.scaffold_templates import FILES

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def normalise_name(name: str) -> str:
    """``My-Plugin`` is refused; ``peftkit-foo`` becomes ``foo`` (the prefix is added back where needed)."""
    short = name[len("peftkit-") :] if name.startswith("peftkit-") else name
    if not NAME_RE.match(short):
        raise PeftkitError(
            f"plugin name {name!r} is not valid: use lowercase letters, digits and single hyphens, starting with a "
            "letter (e.g. `my-method`)"
        )
    return short


def _taken(name: str) -> str | None:
    """Why ``name`` would clash with an installed plugin (naming that plugin and its distribution), or None.

    The package registers the method ``NAME``, the task ``NAME/jsonl`` and the plugin (entry point) ``NAME``;
    each must be free. Disabled and broken plugins count: they are installed, and enabling or fixing one
    would bring the clash back.
    """
    from peftkit.plugin.registry import get_registry, owner

    reg = get_registry()
    for table, what, key in (("methods", "method", name), ("tasks", "task", f"{name}/jsonl")):
        if who := owner(reg, table, key):
            return f"{what} {key!r} is already registered by {who}"
    info = reg.plugins.get(name) or reg.disabled_info.get(name)
    if info is not None:
        state = ", disabled by PEFTKIT_DISABLE_PLUGINS" if name in reg.disabled_info else ""
        dist = f" (distribution {info.distribution} {info.version})" if info.distribution else ""
        return f"a plugin named {name!r} is already installed{dist}{state}"
    if name in reg.broken:
        return f"a plugin named {name!r} is already installed (it fails to load: see `peftkit plugins`)"
    return None


def substitutions(name: str) -> dict[str, str]:
    """Template variables: ``my-method`` → package ``peftkit_my_method``, class prefix ``MyMethod``."""
    return {
        "name": name,
        "dist": f"peftkit-{name}",
        "pkg": "peftkit_" + name.replace("-", "_"),
        "cls": "".join(part.capitalize() for part in name.split("-")),
        "task": f"{name}/jsonl",
    }


def render_files(name: str) -> dict[str, str]:
    """Relative path → file text of the package for ``name`` (nothing written)."""
    subs = substitutions(name)
    return {Template(rel).substitute(subs): Template(text).substitute(subs) for rel, text in FILES.items()}


def new_plugin(name: str, directory: str | Path = ".", *, check_installed: bool = True) -> Path:
    """Write the package ``peftkit-NAME`` under ``directory`` and return its folder.

    Raises:
        PeftkitError: the name is invalid or taken, or the target folder already exists.
    """
    short = normalise_name(name)
    if check_installed and (why := _taken(short)):
        raise PeftkitError(f"cannot create plugin {short!r}: {why}; choose another name")
    root = Path(directory) / f"peftkit-{short}"
    if root.exists():
        raise PeftkitError(f"{root} already exists; remove it or choose another --dir / name")
    for rel, text in render_files(short).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
