"""MkDocs hook: reference sections generated from the code at build time, so the docs cannot drift.

A page asks for a generated section with a marker line of its own::

    <!-- gen:recipe-reference -->          every recipe key, from peftkit.recipe.json_schema()
    <!-- gen:cli-reference -->             every command and option, from peftkit.cli.build_parser()
    <!-- gen:method-params NAME -->        method.params of a registered method
    <!-- gen:method-facts NAME -->         default lr, mergeable, quantized bases of a registered method
    <!-- gen:task-params NAME -->          task.params of a registered task
    <!-- gen:plugins -->                   the installed methods, tasks and model sources
    <!-- gen:model DOTTED.PATH -->         the keys of any pydantic model (e.g. the compare file)
    <!-- gen:methods -->                   registered methods: summary, default lr, merge, quantization
    <!-- gen:tasks -->                     registered tasks: summary, metric, splits
    <!-- gen:objectives -->                registered objectives: summary, Auto class, which tasks use them

A marker naming a method or task that is not registered fails the build (a page about a method that
no longer exists is a bug). tests/test_docs.py imports this file to check the generated text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

MARKER = re.compile(r"^<!-- gen:([a-z-]+)(?: ([^ ]+))? -->$", re.MULTILINE)
SECTIONS = ("model", "method", "task", "data", "train", "eval", "output_dir", "plugins")


class GenerationError(Exception):
    """A marker cannot be filled (unknown marker, unregistered method/task)."""


def _registry() -> Any:
    from peftkit.plugin.registry import get_registry

    return get_registry()


def _cell(text: str) -> str:
    """Make text safe for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """A description for a table cell: ``<output_dir>`` outside code spans would be read as an HTML tag and
    vanish from the page, so angle brackets are escaped there (code spans show them as they are)."""
    parts = _cell(text).split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _deref(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    return defs[ref.rsplit("/", 1)[-1]] if ref else prop


def type_name(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short human type for a JSON-Schema property: ``integer > 0``, ``"nf4" or "fp4"``, ``list of string``."""
    if "anyOf" in prop:
        return " or ".join(type_name(p, defs) for p in prop["anyOf"])
    if "$ref" in prop:
        return "mapping"
    if "const" in prop:
        return json.dumps(prop["const"], ensure_ascii=False)
    if "enum" in prop:
        return " or ".join(json.dumps(v, ensure_ascii=False) for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(type_name(p, defs) for p in prop["prefixItems"]) + "]"
        return f"list of {type_name(prop.get('items', {}), defs)}"
    bounds = [
        f"{op} {prop[k]}"
        for k, op in (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤"))
        if k in prop
    ]
    return " ".join([kind, ", ".join(bounds)]).strip()


def default_text(key: str, prop: dict[str, Any], required: set[str]) -> str:
    if key in required:
        return "**required**"
    if "default" not in prop:  # a default_factory: pydantic leaves it out of the schema
        return {"object": "`{}`", "array": "`[]`"}.get(prop.get("type", ""), "(computed)")
    return f"`{json.dumps(prop['default'], ensure_ascii=False)}`"


def rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted key, type, default, help)`` for every property, nested mappings expanded."""
    out = []
    required = set(schema.get("required", []))
    for key, prop in schema.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        out.append((dotted, type_name(prop, defs), default_text(key, prop, required), prop.get("description", "")))
        for sub in [prop, *prop.get("anyOf", [])]:
            if "$ref" in sub:
                out += rows(_deref(sub, defs), defs, prefix=f"{dotted}.")
    return out


def table(entries: list[tuple[str, str, str, str]]) -> str:
    if not entries:
        return "This section has no keys.\n"
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {_cell(t)} | {_cell(d)} | {_prose(h)} |" for k, t, d, h in entries]
    return "\n".join(lines) + "\n"


def recipe_reference() -> str:
    """One table per top-level recipe section, then the params of every registered method and task."""
    from peftkit.recipe import json_schema

    schema = json_schema(_registry())
    defs = schema["$defs"]
    props = schema["properties"]
    required = set(schema.get("required", []))
    out = []
    for section in SECTIONS:
        prop = props[section]
        out.append(f"## `{section}`\n")
        out.append(_prose(prop.get("description", "")) + "\n" if prop.get("description") else "")
        target = prop if "$ref" not in prop else _deref(prop, defs)
        if target.get("type") == "object" and "properties" in target:
            out.append(table(rows(target, defs, prefix=f"{section}.")))
        else:
            out.append(
                table(
                    [
                        (
                            section,
                            type_name(prop, defs),
                            default_text(section, prop, required),
                            prop.get("description", ""),
                        )
                    ]
                )
            )
    for kind in ("method", "task"):
        reg = getattr(_registry(), f"{kind}s")
        out.append(f"## `{kind}.params` by {kind}\n")
        out.append(f"`{kind}.params` is checked by the {kind}'s own schema, chosen by `{kind}.name`.\n")
        for name in sorted(reg):
            out.append(f"### {kind} `{name}`\n\n{_cell(reg[name].summary)}\n")
            out.append(plugin_params(kind, name, heading=False))
    return "\n".join(out)


def plugin_params(kind: str, name: str, *, heading: bool = True) -> str:
    """The params table of one registered method or task."""
    reg = getattr(_registry(), f"{kind}s")
    if name not in reg:
        raise GenerationError(
            f"the docs describe {kind} {name!r}, which no installed plugin registers "
            f"(registered: {', '.join(sorted(reg))})"
        )
    schema = reg[name].params_model.model_json_schema()
    body = table(rows(schema, schema.get("$defs", {}), prefix=f"{kind}.params."))
    return (f"Generated from `{reg[name].params_model.__name__}`:\n\n" if heading else "") + body


def model_table(dotted: str) -> str:
    """The keys of any pydantic model, by import path (e.g. ``peftkit.compare.grid.CompareFile``)."""
    import importlib

    module, _, attr = dotted.rpartition(".")
    try:
        model = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise GenerationError(f"cannot import {dotted!r} for a keys table: {exc}") from None
    schema = model.model_json_schema()
    return table(rows(schema, schema.get("$defs", {})))


def _actions_table(parser: argparse.ArgumentParser) -> str:
    lines = ["| argument | description | default |", "|---|---|---|"]
    for act in parser._actions:  # argparse has no public API for this; sphinx-argparse reads it too
        if isinstance(act, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(act.option_strings) if act.option_strings else (act.metavar or act.dest)
        if act.nargs in ("*", "+"):
            name += " ..."
        default = (
            "" if act.default in (None, False, argparse.SUPPRESS) or not act.option_strings else f"`{act.default}`"
        )
        lines.append(f"| `{_cell(name)}` | {_prose(act.help or '')} | {default} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else "No arguments besides `-h/--help`.\n"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            return dict(act.choices)
    return {}


def cli_reference() -> str:
    """Usage, description and arguments of ``peftkit`` and every subcommand (plugin commands included)."""
    from peftkit.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps usage to the terminal width; make it stable
    try:
        parser = build_parser()
        out = [
            "## `peftkit`\n",
            f"{parser.description}\n",
            f"```text\n{parser.format_usage().strip()}\n```\n",
            _actions_table(parser),
        ]
        for name, sub in _subcommands(parser).items():
            out.append(f"## `peftkit {name}`\n")
            out.append(f"{(sub.description or '').strip()}\n")
            out.append(f"```text\n{sub.format_usage().strip()}\n```\n")
            out.append(_actions_table(sub))
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(out)


def _bits(method: Any) -> str:
    bits = sorted(getattr(method, "quantized_bits", ()) or ())
    return ", ".join(f"{b}-bit" for b in bits) or "no"


def methods_table() -> str:
    """Every registered method with the facts that decide between them."""
    reg = _registry()
    lines = ["| method | summary | default lr | mergeable | quantized base |", "|---|---|---|---|---|"]
    for name in sorted(reg.methods):
        m = reg.methods[name]
        lines.append(
            f"| `{name}` | {_cell(m.summary)} | {m.default_lr:g} | {'yes' if m.can_merge else 'no'} | {_bits(m)} |"
        )
    return "\n".join(lines) + "\n"


def method_facts(name: str) -> str:
    """One line of facts about a registered method, from the object itself."""
    reg = _registry()
    if name not in reg.methods:
        raise GenerationError(
            f"the docs describe method {name!r}, which no installed plugin registers "
            f"(registered: {', '.join(sorted(reg.methods))})"
        )
    m = reg.methods[name]
    return (
        f"`method.name: {name}` · default learning rate {m.default_lr:g} · "
        f"mergeable: {'yes' if m.can_merge else 'no'} · trains on a quantized base: {_bits(m)}\n"
    )


def tasks_table() -> str:
    """Every registered task with its main metric and splits."""
    reg = _registry()
    lines = ["| task | summary | metric | splits |", "|---|---|---|---|"]
    for name in sorted(reg.tasks):
        t = reg.tasks[name]
        lines.append(f"| `{name}` | {_cell(t.summary)} | {t.metric} | {', '.join(t.splits)} |")
    return "\n".join(lines) + "\n"


def objectives_table() -> str:
    """Every registered objective with its transformers Auto class and the tasks that train it."""
    reg = _registry()
    lines = ["| objective | summary | loads | tasks |", "|---|---|---|---|"]
    for name, o in reg.objectives.items():
        tasks = sorted(t for t, task in reg.tasks.items() if reg.objective_of(task) is o)
        lines.append(f"| `{name}` | {_cell(o.summary)} | `{o.auto_class}` | {', '.join(f'`{t}`' for t in tasks)} |")
    return "\n".join(lines) + "\n"


def plugins_table() -> str:
    reg = _registry()
    lines = ["| kind | name | summary |", "|---|---|---|"]
    kinds = (("method", reg.methods), ("task", reg.tasks), ("objective", reg.objectives), ("model source", reg.sources))
    for kind, table_ in kinds:
        for name in sorted(table_):
            lines.append(f"| {kind} | `{name}` | {_cell(table_[name].summary)} |")
    return "\n".join(lines) + "\n"


def render(kind: str, arg: str | None) -> str:
    """The Markdown for one marker."""
    if kind == "recipe-reference":
        return recipe_reference()
    if kind == "cli-reference":
        return cli_reference()
    if kind == "method-facts" and arg:
        return method_facts(arg)
    if kind in ("method-params", "task-params") and arg:
        return plugin_params(kind.split("-")[0], arg)
    if kind == "plugins":
        return plugins_table()
    if kind == "model" and arg:
        return model_table(arg)
    if kind == "methods":
        return methods_table()
    if kind == "tasks":
        return tasks_table()
    if kind == "objectives":
        return objectives_table()
    raise GenerationError(f"unknown docs marker <!-- gen:{kind} {arg or ''} -->")


# Marks for tests/test_docs.py (which blocks run); readers need not see them, even in the HTML source.
TEST_MARK = re.compile(r"^<!-- test: [^\n]*-->\n", re.MULTILINE)


def expand(markdown: str) -> str:
    """Replace every marker line in ``markdown`` with its generated text; drop test marks."""
    return TEST_MARK.sub("", MARKER.sub(lambda m: render(m.group(1), m.group(2)), markdown))


# Docstrings in peftkit use Sphinx roles (:class:`x.Y`), which mkdocstrings leaves as literal text.
_ROLE = re.compile(r":(?:class|data|func|meth|attr|mod|exc|obj):<code>([\w.]+)</code>")


def link_roles(html: str) -> str:
    """Turn a leftover Sphinx role into an autorefs cross-reference (plain code when it does not resolve)."""
    return _ROLE.sub(lambda m: f'<autoref identifier="{m.group(1)}" optional><code>{m.group(1)}</code></autoref>', html)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: link Sphinx roles left in rendered docstrings."""
    return link_roles(html)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: fill the markers of a page (errors abort the build, naming the page)."""
    from mkdocs.exceptions import PluginError

    try:
        return expand(markdown)
    except GenerationError as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from None
