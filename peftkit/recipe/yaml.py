"""Reading YAML: the recipe loader (duplicate keys refused, ``1e-3`` a float), and the key → line index for
error messages (recipes and compare files)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from peftkit.errors import RecipeError


def line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a YAML document, list indices included (``methods.2.params``), to its 1-based line,
    for error messages (recipes and compare files)."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (str(k.value),)
                index[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = path + (str(i),)
                index[key] = v.start_mark.line + 1
                walk(v, key)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


class RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys (PyYAML keeps the last silently, dropping the first block)
    and reads ``1e-3`` as a float, as YAML 1.2 and editors do (PyYAML's YAML 1.1 wants ``1.0e-3``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # unhashable keys: SafeLoader reports them itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key]}): the second would silently replace "
                    "the first; merge them into one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# a copy of the resolver table: add_implicit_resolver on a subclass would append to SafeLoader's own lists
RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def parse_yaml(text: str, source: str = "<recipe>") -> dict[str, Any]:
    """Load a recipe or compare file (:class:`RecipeLoader`) with errors that give file:line:column."""
    try:
        data = yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([f"{where}: YAML syntax error: {problem}"], source) from None
    if data is None:
        raise RecipeError([f"{source}: the file is empty; a recipe needs model, method, task and output_dir"], source)
    if not isinstance(data, dict):
        raise RecipeError([f"{source}: a recipe must be a mapping of keys, got {type(data).__name__}"], source)
    return data
