"""Recipes: YAML → overrides → validated :class:`Recipe`, with every problem reported at once.

Validation has two stages: the core schema (:mod:`~peftkit.recipe.schema`), then ``method.params`` /
``task.params`` through the plugin's own pydantic model (:mod:`~peftkit.recipe.checks`). Errors carry dotted
paths and, where known, the YAML line (:mod:`~peftkit.recipe.problems`). The package is in layers, each module
importing only those before it: ``problems`` (messages) → ``schema``, ``yaml`` (file → text → data, line
index) → ``overrides`` (dotted keys) → ``places`` (model sources, output_dir) → ``checks`` (cross-plugin) →
``validation`` (entry points) → ``resolve`` (defaults filled in, JSON Schema).
"""

from __future__ import annotations

from peftkit.recipe.checks import family_refusal, metric_problem, reported_metrics
from peftkit.recipe.overrides import apply_overrides, flatten, override_keys, set_dotted
from peftkit.recipe.places import folder_model_type, split_source
from peftkit.recipe.problems import _format as _format  # compare files format their problems the same way
from peftkit.recipe.problems import pydantic_problems
from peftkit.recipe.resolve import json_schema, method_params, resolved_dict, selection_metric, task_params
from peftkit.recipe.schema import (
    DataConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    QuantizationConfig,
    Recipe,
    TaskConfig,
    TrainConfig,
)
from peftkit.recipe.validation import data_problems, load_recipe, objective_warnings, validate
from peftkit.recipe.yaml import RecipeLoader, line_index, parse_yaml, read_text

__all__ = [
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "ModelConfig",
    "QuantizationConfig",
    "Recipe",
    "RecipeLoader",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "data_problems",
    "family_refusal",
    "flatten",
    "folder_model_type",
    "json_schema",
    "line_index",
    "load_recipe",
    "method_params",
    "metric_problem",
    "objective_warnings",
    "override_keys",
    "parse_yaml",
    "pydantic_problems",
    "read_text",
    "reported_metrics",
    "resolved_dict",
    "selection_metric",
    "set_dotted",
    "split_source",
    "task_params",
    "validate",
]
