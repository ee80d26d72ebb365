"""Validation entry points: a recipe file (read, override, validate) or raw data → :class:`Recipe`, every problem
in one :class:`RecipeError`; what a run would miss on this machine (``validate --strict``); and the objective's
warnings about the task's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from peftkit.errors import RecipeError
from peftkit.recipe.checks import _check_plugins
from peftkit.recipe.overrides import apply_overrides, override_keys
from peftkit.recipe.problems import _format, pydantic_problems
from peftkit.recipe.schema import Recipe
from peftkit.recipe.yaml import line_index, parse_yaml, read_text


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None, *, registry: Any = None) -> Recipe:
    """Read, override and validate a recipe file. Raises :class:`RecipeError` listing every problem."""
    text = read_text(path)
    data = parse_yaml(text, str(path))
    if isinstance(data, dict) and {"methods", "tasks"} <= set(data) and not {"method", "task"} & set(data):
        raise RecipeError(
            [
                f"{path} is a compare file (methods × tasks × seeds), not a recipe: check it with "
                f"`peftkit compare {path} --dry-run`, run it with `peftkit compare {path}`"
            ],
            str(path),
        )
    data = apply_overrides(data, list(overrides or []))
    return validate(
        data, registry=registry, source=str(path), text=text, overridden=override_keys(list(overrides or []))
    )


def validate(
    data: dict[str, Any],
    *,
    registry: Any = None,
    source: str | None = None,
    text: str = "",
    overridden: dict[tuple[str, ...], str] | None = None,
) -> Recipe:
    """Validate raw recipe data: core schema, then plugin params. Raises one RecipeError listing all problems.

    ``overridden`` (from :func:`override_keys`): keys set on the command line, named as such in errors."""
    from peftkit.plugin.registry import get_registry

    lines = line_index(text) if text else {}
    problems: list[tuple[tuple, str]] = []
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += pydantic_problems(exc, fields=Recipe, data=data)
        recipe = None
    reg = registry or get_registry()
    problems += _check_plugins(data, reg)
    if problems:
        raise RecipeError(_format(problems, lines, source, overridden), source)
    try:
        reg.hooks_for(recipe.plugins).peftkit_configure(recipe=recipe)
    except RecipeError as exc:  # a plugin refused the recipe: say which, and which file
        raise RecipeError([f"{line} (refused by {_configure_site(exc)})" for line in exc.problems], source) from exc
    return recipe


def _configure_site(exc: BaseException) -> str:
    """``peftkit_configure in acme/__init__.py:12``: the plugin function that raised ``exc``."""
    import traceback

    for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
        if frame.f_code.co_name == "peftkit_configure":
            return f"peftkit_configure in {frame.f_globals.get('__name__', '?')} ({Path(frame.f_code.co_filename).name}:{line})"
    return "a plugin's peftkit_configure"


def data_problems(recipe: Recipe, registry: Any = None) -> list[str]:
    """What a run of ``recipe`` on this machine would miss (data files, folders), from the task's optional
    ``check_data``: one line per problem, starting with the dotted key."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    task = reg.tasks[recipe.task.name]
    check = getattr(task, "check_data", None)
    if check is None:
        return []
    return [f"{key}: {msg}" for key, msg in check(task.params_model.model_validate(recipe.task.params))]


def objective_warnings(recipe: Recipe, registry: Any = None) -> list[str]:
    """What the objective a run of ``recipe`` trains (``task.objective``, else the task's own) says about the task's
    settings without making the recipe invalid, from the objective's optional ``recipe_warnings`` (label-likelihood:
    labels that would be scored as bare numbers). ``peftkit validate`` prints them; a run logs them."""
    from peftkit.errors import PeftkitError
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    task = reg.tasks[recipe.task.name]
    try:
        objective = reg.objective_of(task, recipe.task.objective)
        check = getattr(objective, "recipe_warnings", None)
        return list(check(task=task, params=task.params_model.model_validate(recipe.task.params))) if check else []
    except PeftkitError:  # what is wrong with the task itself is the run's to report
        return []
