"""Cross-plugin checks of raw recipe data against the registry: names exist and are allowed, plugin params and
``plugins_config`` sections validate (and hold only finite numbers), the method suits the quantization and the
task's head, the eval metric is one the task reports. Each check returns ``(path, message)`` pairs; the data may be
anything the schema refuses, so every check looks before it uses a value."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from peftkit.errors import PeftkitError
from peftkit.recipe.places import _check_output_dir, _check_source, _owner, model_type_of, os_problem
from peftkit.recipe.problems import _closest, pydantic_problems, shown
from peftkit.recipe.schema import MAX_INT

Problems = list[tuple[tuple, str]]


def _check_plugins(data: dict[str, Any], reg: Any) -> Problems:
    """Stage two: names exist (and are allowed), params validate through the plugin's schema."""
    allowed = data.get("plugins")
    if not (isinstance(allowed, list) and all(isinstance(name, str) for name in allowed)):
        allowed = None  # absent; or not a list of names, which the core schema reports
    problems = _check_allow_list(allowed, reg)
    for section, table in (("method", reg.methods), ("task", reg.tasks)):
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get("name"), str):
            problems += _check_section(section, sec, table, data, reg, allowed)
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("source"), str):
        problems += _check_source(model["source"], reg, allowed)
    problems += _check_plugin_configs(data, reg, allowed)
    problems += _check_quantization(data, reg)
    problems += _check_task_head(data, reg)
    if isinstance(data.get("output_dir"), str):
        problems += _check_output_dir(data["output_dir"])
    return problems


def _check_allow_list(allowed: list | None, reg: Any) -> Problems:
    """Every name in ``plugins:`` is an installed plugin."""
    problems: Problems = []
    for i, name in enumerate(allowed or []):
        if name not in reg.plugins:
            avail = ", ".join(sorted(reg.plugins)) or "none"
            problems.append(
                (
                    ("plugins", str(i)),
                    f"unknown plugin {shown(name)}{_closest(name, list(reg.plugins))} "
                    f"(installed: {avail}){reg.broken_note()}",
                )
            )
    return problems


def _check_section(
    section: str, sec: dict[str, Any], table: dict[str, Any], data: dict[str, Any], reg: Any, allowed: list | None
) -> Problems:
    """``method`` or ``task``: the name is registered and allowed, its params validate, its own check passes."""
    name, kind = sec["name"], section
    obj = table.get(name)
    if obj is None:
        avail = ", ".join(sorted(table)) or "none installed"
        return [
            (
                (section, "name"),
                f"unknown {kind} {shown(name)}{_closest(name, list(table))} (available: {avail}){reg.broken_note()}",
            )
        ]
    problems: Problems = []
    owner = _owner(reg, section, name)
    if allowed is not None and owner not in allowed:
        problems.append(
            (
                (section, "name"),
                f"{kind} {name!r} comes from plugin {owner!r}, which is not in `plugins:` "
                f"({', '.join(map(shown, allowed))})",
            )
        )
    params = sec.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        return problems  # the core schema already reported it
    try:
        validated = obj.params_model.model_validate(params)
    except ValidationError as exc:
        return problems + pydantic_problems(exc, prefix=(section, "params"), fields=obj.params_model, data=params)
    problems += non_finite(params, (section, "params"))
    check = getattr(obj, "check", None)  # optional: cross-section checks (quantization, step budgets, data files)
    if check is not None:
        try:
            found = check(validated, data)
        except OSError as exc:  # a path too long for this OS, a folder it may not read
            found = [(f"{section}.params", os_problem(exc))]
        problems += [(tuple(loc.split(".")), msg) for loc, msg in found]
    if section == "task":
        problems += _check_metric(data, obj, name)
    return problems


def _check_metric(data: dict[str, Any], task: Any, name: str) -> Problems:
    """``eval.metric`` is one the task reports; unset, the task's own main metric must be among them."""
    metric = data["eval"].get("metric") if isinstance(data.get("eval"), dict) else None
    if isinstance(metric, str):
        problem = metric_problem(metric, task, name, 2)
        return [(("eval", "metric"), problem)] if problem else []
    if metric is not None:
        return []  # not a string: the core schema reported it
    reported = reported_metrics(task, 2)
    if task.metric in reported:
        return []
    return [  # the task's own metric: a bug in its plugin, not in the recipe
        (
            ("task", "name"),
            f"task {name!r} keeps the best checkpoint by its main metric "
            f"{task.metric!r} (Task.metric), but its compute_metrics does not report it: "
            f"reports {', '.join(reported)}; fix the task's plugin, or set eval.metric",
        )
    ]


def non_finite(value: Any, loc: tuple) -> Problems:
    """Every infinite or NaN float, and every integer beyond 2**63-1, in ``value`` (plugin params), by path:
    the core's rule for every plugin, whether or not its own params model allows them."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(loc, f"must be a finite number, got {value}")]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return [(loc, f"must be at most 2**63-1, got {shown(value)}")]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    return [problem for k, v in items for problem in non_finite(v, (*loc, str(k)))]


def _check_plugin_configs(data: dict[str, Any], reg: Any, allowed: list[str] | None) -> Problems:
    """Each ``plugins_config.<name>`` names a registered section and validates through its plugin's model."""
    sections = data.get("plugins_config")
    if not isinstance(sections, dict):
        return []  # absent, or the core schema already reported it
    problems: Problems = []
    for name, values in sections.items():
        loc = ("plugins_config", str(name))
        section = reg.configs.get(name)
        if section is None:
            avail = ", ".join(sorted(reg.configs)) or "none installed"
            problems.append(
                (
                    loc,
                    f"no plugin takes settings {shown(name)}{_closest(str(name), list(reg.configs))} (available: {avail})",
                )
            )
            continue
        owner = reg.owners.get(("configs", name))
        if allowed is not None and owner not in allowed:
            problems.append((loc, f"section {name!r} belongs to plugin {owner!r}, which is not in `plugins:`"))
        if isinstance(values, dict):
            try:
                section.params_model.model_validate(values)
            except ValidationError as exc:
                problems += pydantic_problems(exc, prefix=loc, fields=section.params_model, data=values)
                continue
            problems += non_finite(values, loc)
    return problems


def reported_metrics(task: Any, n_labels: int) -> list[str]:
    """The metric names a task's ``compute_metrics`` reports (sorted), from a dummy prediction of ``n_labels`` classes."""
    import numpy as np

    ids = np.arange(max(n_labels, 2)) % max(n_labels, 1)
    return sorted(task.compute_metrics(ids, ids))


def metric_problem(metric: str | None, task: Any, task_name: str, n_labels: int) -> str | None:
    """Why ``eval.metric`` is not one the task reports (None when it is, or unset): the task's metrics on a
    dummy prediction of ``n_labels`` classes name what it reports."""
    if metric is None:
        return None
    reported = reported_metrics(task, n_labels)
    if metric in reported:
        return None
    return (
        f"{metric!r} is not a metric of task {task_name!r}, which reports {', '.join(reported)}; use one "
        f"of them, or remove eval.metric for the task's main metric ({task.metric})"
    )


def _check_quantization(data: dict[str, Any], reg: Any) -> Problems:
    """A quantized base needs a method that trains adapters on it, not the frozen integer weights."""
    model, method = data.get("model"), data.get("method")
    if not (isinstance(model, dict) and isinstance(model.get("quantization"), dict) and isinstance(method, dict)):
        return []
    bits, name = model["quantization"].get("bits"), method.get("name")
    obj = reg.methods.get(name) if isinstance(name, str) else None
    if obj is None or bits not in (4, 8) or bits in obj.quantized_bits:
        return []
    ok = sorted(n for n, m in reg.methods.items() if bits in m.quantized_bits)
    why = (
        getattr(obj, "quantization_note", "")
        or "it trains base weights, which are frozen integers in a quantized model"
    )
    return [
        (
            ("model", "quantization"),
            f"method {obj.name!r} cannot train a {bits}-bit base: {why}. "
            f"Remove model.quantization, or use one of: {', '.join(ok)}",
        )
    ]


def family_refusal(objective: Any, model_type: str | None, who: str, override: str | None = None) -> str | None:
    """Why ``objective`` cannot train a ``model_type`` model (``who``: what trains it, "task 'x'"), from the
    objective's ``encoder_only`` / ``decoder_only`` and the type's architecture family; None when it can or the
    family is unknown. Validation (when the source knows the type) and loading (from the folder's config.json)
    both ask."""
    from peftkit.plugin.architectures import DECODER, ENCODER, FAMILIES

    fam = FAMILIES.get(model_type or "")
    if objective is None or fam is None:
        return None
    if getattr(objective, "encoder_only", False) and fam is DECODER:
        return (
            f"{who} needs a {objective.name} head, which transformers has for encoders (bert, xlm-roberta, "
            f"...) but not for {model_type} models like this one; use an encoder"
        )
    if getattr(objective, "decoder_only", False) and fam is ENCODER:
        instead = (
            "; or remove task.objective to train the task's own head on this encoder" if override is not None else ""
        )
        return (
            f"{who} trains the {objective.name} objective, which needs a decoder (a model that generates text: "
            f"llama, qwen2, gemma3, ...), and this is a {model_type} encoder: transformers loads it as a causal LM "
            f"all the same, but it attends in both directions, so every position sees the tokens it is to predict. "
            f"Use a decoder{instead}"
        )
    return None


def _check_task_head(data: dict[str, Any], reg: Any) -> Problems:
    """The objective the run trains (``task.objective`` when given, else the task's own) needs a method that trains
    it (prefix tuning has no form that scores choices) and, when transformers has its head for encoders only, an
    encoder."""
    from peftkit.plugin.contracts import head_mismatch, heads_note

    method, task = data.get("method"), data.get("task")
    if not (isinstance(method, dict) and isinstance(task, dict)):
        return []
    if not (isinstance(method.get("name"), str) and isinstance(task.get("name"), str)):
        return []  # a name that is not a string (a list, a mapping) is already reported by the schema
    m, t = reg.methods.get(method["name"]), reg.tasks.get(task["name"])
    try:
        override = task.get("objective") if isinstance(task.get("objective"), str) else None
        objective = reg.objective_of(t, override) if t is not None else None
    except PeftkitError as exc:  # its objective's plugin is disabled or broken
        return [(("task", "name"), str(exc))]
    refusal = family_refusal(
        objective, model_type_of(data.get("model"), reg), f"task {t.name!r}" if t else "", override
    )
    if refusal:
        return [(("model", "source"), refusal)]
    # the objective the run trains: the recipe's task.objective when it gives one, else the task's own
    name = objective.name if override is not None and objective is not None else None
    mismatch = head_mismatch(t, m, reg, name) if m is not None and t is not None else None
    if mismatch is None:
        return []
    ok = sorted(n for n, x in reg.methods.items() if head_mismatch(t, x, reg, name) is None)
    why = heads_note(m, objective.name if objective is not None else "")
    return [(("method", "name"), f"{mismatch}: {why}. Use one of: {', '.join(ok)}")]
