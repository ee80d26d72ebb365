"""A validated recipe resolved: plugin params with defaults, the dict written to ``recipe.yaml``, the selection
metric, and the JSON Schema of every recipe key (``peftkit schema``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from peftkit.recipe.schema import Recipe


def selection_metric(recipe: Recipe, task: Any) -> str:
    """The metric that picks the best checkpoint and ranks runs: ``eval.metric``, else the task's own."""
    return recipe.eval.metric or task.metric


def method_params(recipe: Recipe, registry: Any) -> BaseModel:
    return registry.methods[recipe.method.name].params_model.model_validate(recipe.method.params)


def task_params(recipe: Recipe, registry: Any) -> BaseModel:
    return registry.tasks[recipe.task.name].params_model.model_validate(recipe.task.params)


def resolved_dict(recipe: Recipe, registry: Any) -> dict[str, Any]:
    """The recipe with every default filled in, plugin params included (what output_dir/recipe.yaml holds)."""
    d = recipe.model_dump(mode="json")
    d["method"]["params"] = method_params(recipe, registry).model_dump(mode="json")
    d["task"]["params"] = task_params(recipe, registry).model_dump(mode="json")
    d["plugins_config"] = {
        name: registry.configs[name].params_model.model_validate(values).model_dump(mode="json")
        for name, values in recipe.plugins_config.items()
    }
    return d


def json_schema(registry: Any = None) -> dict[str, Any]:
    """JSON Schema for recipes: the core schema, with method/task params as a oneOf per registered name."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for section, table in (("method", reg.methods), ("task", reg.tasks)):
        variants = []
        for name, obj in sorted(table.items()):
            sub = obj.params_model.model_json_schema(ref_template="#/$defs/{model}")
            defs.update(sub.pop("$defs", {}))
            key = f"{section}:{name}".replace("/", "_").replace(":", "_")
            defs[key] = sub
            variants.append(
                {
                    "if": {"properties": {"name": {"const": name}}},
                    "then": {"properties": {"params": {"$ref": f"#/$defs/{key}"}}},
                }
            )
        cfg = "MethodConfig" if section == "method" else "TaskConfig"
        defs[cfg]["properties"]["name"]["enum"] = sorted(table)
        defs[cfg]["allOf"] = variants
    sections = {}
    for name, section in sorted(reg.configs.items()):
        sub = section.params_model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        sections[name] = sub
    schema["properties"]["plugins_config"].update(properties=sections, additionalProperties=False)
    schema["title"] = "peftkit recipe"
    return schema
