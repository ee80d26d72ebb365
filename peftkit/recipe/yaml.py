"""Reading YAML: the recipe file's bytes → text, the recipe loader, and the key → line index for error
messages (recipes and compare files).

The loader is PyYAML's ``SafeLoader`` (no tag runs code) made safe for hostile input too: alias expansion
("billion laughs"), recursive aliases and deep nesting are refused while composing, before anything is
expanded; literals Python cannot convert (``0x_``, a 5,000-digit integer) and YAML 1.1 booleans used as keys
(``yes:``) are problems with a line number, not tracebacks.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from peftkit.errors import RecipeError
from peftkit.recipe.problems import cut, shown

MAX_NODES = 100_000  # nodes of the expanded document (an alias counts its whole anchored value each time)
MAX_DEPTH = 100  # levels of nesting; a recipe needs under ten, PyYAML's recursive composer breaks near 500
MAX_BYTES = 1 << 20  # a recipe is a few KB; this bounds what the pure-Python parser is asked to read
_MERGE = "tag:yaml.org,2002:merge"


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML the loader refuses (an alias bomb, a recursive alias, ...): shown as is, not as a syntax error."""


def _refuse(message: str, mark: Any) -> RefusedYAML:
    return RefusedYAML(None, None, message, mark)


class RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys (PyYAML keeps the last silently, dropping the first block)
    and reads ``1e-3`` as a float, as YAML 1.2 and editors do (PyYAML's YAML 1.1 wants ``1.0e-3``).

    Composing counts the nodes of the expanded document and the nesting depth, so an alias bomb or a
    ``[[[[...]]]]`` is refused in time linear in the text; YAML merge keys (``<<: *defaults``) work."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._nodes = 0  # expanded nodes so far
        self._depth = 0
        self._sizes: dict[str, int] = {}  # anchor → expanded size of its node
        self._open: set[str] = set()  # anchors whose node is being composed: an alias to one is recursive

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                line, name = self.anchors[event.anchor].start_mark.line + 1, cut(event.anchor)
                raise _refuse(
                    f"alias *{name} is used inside its own anchor &{name} (line {line}): "
                    "a recursive structure cannot be a recipe value; write the value out",
                    event.start_mark,
                )
            node = super().compose_node(parent, index)  # PyYAML reports an undefined alias
            self._count(self._sizes.get(event.anchor, 1), event.start_mark)
            return node
        event = self.peek_event()
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            first = self.anchors[anchor].start_mark.line + 1
            raise _refuse(
                f"anchor &{cut(anchor)} is defined twice (first on line {first}); rename one", event.start_mark
            )
        if self._depth >= MAX_DEPTH:
            raise _refuse(f"nested more than {MAX_DEPTH} levels deep; a recipe needs only a few", event.start_mark)
        before = self._nodes
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        self._count(1, event.start_mark)
        if anchor is not None:
            self._sizes[anchor] = self._nodes - before
        return node

    def _count(self, n: int, mark: Any) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise _refuse(
                f"the document expands to more than {MAX_NODES:,} values (aliases count each time they are used); "
                "a recipe has a few dozen: remove the repeated aliases",
                mark,
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # int("0x_", 16), a 5,000-digit integer, month 13
            raise _refuse(_literal_problem(node, exc), node.start_mark) from None

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"tag {shown(node.tag)} is not allowed: a recipe is data and cannot run code; remove the tag",
            node.start_mark,
        )

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue  # `<<: *defaults` — its keys may be overridden by the mapping's own
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, bool) or key is None:
                raise _refuse(
                    f"key {shown(key_node.value)} reads as {key!r} (YAML 1.1); quote it ('{key_node.value}':) "
                    "if you mean the word",
                    key_node.start_mark,
                )
            if not isinstance(key, (str, int, float)):
                continue  # unhashable keys: SafeLoader reports them itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shown(key)} (first on line {seen[key]}): the second would silently replace "
                    "the first; merge them into one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _literal_problem(node: yaml.Node, exc: Exception) -> str:
    """Why a scalar that looks like a number or a date cannot be one, and what to write instead."""
    kind = node.tag.rsplit(":", 1)[-1]
    value = str(node.value)
    digits = sum(c.isdigit() for c in value)
    if kind == "int" and digits > sys.get_int_max_str_digits():
        why = f"an integer of {digits:,} digits (Python reads at most {sys.get_int_max_str_digits():,})"
    else:
        why = f"not a valid {kind}"
    return f"{shown(value)} is {why}; quote it if you mean text"


RecipeLoader.add_constructor(None, RecipeLoader.construct_undefined)  # every tag SafeLoader does not know
# a copy of the resolver table: add_implicit_resolver on a subclass would append to SafeLoader's own lists
RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def compose(text: str) -> yaml.Node | None:
    """The node tree of ``text`` under the loader's limits (raises a ``yaml.YAMLError``)."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """``text`` as Python data under the loader's limits (raises a ``yaml.YAMLError``)."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a YAML document, list indices included (``methods.2.params``), to its 1-based line,
    for error messages (recipes and compare files). The tree is composed under the loader's limits, so the walk
    is bounded; a document the loader refuses has no index."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (str(k.value),)
                index.setdefault(key, k.start_mark.line + 1)
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = path + (str(i),)
                index.setdefault(key, v.start_mark.line + 1)
                walk(v, key)

    try:
        root = compose(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


def parse_yaml(text: str, source: str = "<recipe>") -> dict[str, Any]:
    """Load a recipe or compare file (:class:`RecipeLoader`) with errors that give file:line:column."""
    try:
        data = load(text)
    except yaml.YAMLError as exc:
        raise RecipeError([_yaml_problem(exc, source)], source) from None
    if data is None:
        raise RecipeError([f"{source}: the file is empty; a recipe needs model, method, task and output_dir"], source)
    if not isinstance(data, dict):
        raise RecipeError([f"{source}: a recipe must be a mapping of keys, got {type(data).__name__}"], source)
    return data


def _yaml_problem(exc: yaml.YAMLError, source: str) -> str:
    """``file:line:column: what`` for a YAML error (a reader error knows a character position only)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    if isinstance(exc, yaml.reader.ReaderError):
        return f"{source}: {describe(exc)} (at character {exc.position})"
    if isinstance(exc, RefusedYAML):
        return f"{where}: {describe(exc)}"
    return f"{where}: YAML syntax error: {describe(exc)}"


def describe(exc: yaml.YAMLError) -> str:
    """What a YAML error says, on one line and without PyYAML's location lines."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.character!r} is not allowed in YAML text; remove it"
    return cut(str(getattr(exc, "problem", None) or exc), 300)


def _noun(what: str) -> str:
    """The RecipeError heading's noun: "invalid recipe x.yaml", "invalid compare file x.yaml"."""
    return what if what == "recipe" else f"{what} file"


def read_text(path: str | os.PathLike, what: str = "recipe") -> str:
    """The text of a recipe (or compare) file: UTF-8, at most :data:`MAX_BYTES`; every way it cannot be read —
    missing, a folder, an OS error, too big, compressed, another encoding — is one line in a RecipeError."""
    source = str(path)
    try:
        p = Path(path)
        if p.is_dir():
            raise RecipeError([f"{source}: is a folder, not a {what} file"], source, what=_noun(what))
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError([f"{source}: no such {what} file"], source, what=_noun(what)) from None
    except OSError as exc:  # a name too long, permission, a /proc file that refuses reading ...
        raise RecipeError(
            [f"{cut(source, 200)}: cannot read this {what} file: {exc.strerror or exc}"], source
        ) from None
    except ValueError:  # a NUL character in the path
        raise RecipeError(
            [f"{cut(source, 200)}: not a usable file name (it holds a NUL character)"], source, what=what
        ) from None
    if len(raw) > MAX_BYTES:
        raise RecipeError(
            [f"{source}: over {MAX_BYTES >> 20} MiB, too big for a {what} file (a few KB)"], source, what=what
        )
    return decode(raw, source, what)


def decode(raw: bytes, source: str, what: str = "recipe") -> str:
    """UTF-8 text (a BOM is dropped); anything else is one line saying what the file is and what to do."""
    if raw[:2] == b"\x1f\x8b":
        raise RecipeError([f"{source}: is gzip-compressed; decompress it first (gunzip)"], source, what=_noun(what))
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16")):
        if raw.startswith(bom) or (name == "UTF-16" and raw.startswith(b"\xfe\xff")):
            raise RecipeError([f"{source}: is {name} text; save it as UTF-8"], source, what=_noun(what))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start]
        problem = f"{source}:{line}:{column}: byte 0x{byte:02x} is not UTF-8 (latin-1?); save the file as UTF-8"
        raise RecipeError([problem], source, what=_noun(what)) from None
