"""Cross-plugin checks of raw recipe data against the registry: names exist and are allowed, plugin params and
``plugins_config`` sections validate, the method suits the quantization and the task's head, the model source
resolves. Each check returns ``(path, message)`` pairs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from peftkit.errors import PeftkitError
from peftkit.recipe.problems import _closest, pydantic_problems


def _check_plugins(data: dict[str, Any], reg: Any) -> list[tuple[tuple, str]]:
    """Stage two: names exist (and are allowed), params validate through the plugin's schema."""
    problems: list[tuple[tuple, str]] = []
    allowed = data.get("plugins") if isinstance(data.get("plugins"), list) else None
    for i, name in enumerate(allowed or []):
        if name not in reg.plugins:
            avail = ", ".join(sorted(reg.plugins)) or "none"
            problems.append(
                (
                    ("plugins", str(i)),
                    f"unknown plugin {name!r}{_closest(str(name), list(reg.plugins))} "
                    f"(installed: {avail}){reg.broken_note()}",
                )
            )
    for section, table, kind in (("method", reg.methods, "method"), ("task", reg.tasks, "task")):
        sec = data.get(section)
        if not isinstance(sec, dict) or not isinstance(sec.get("name"), str):
            continue
        name = sec["name"]
        obj = table.get(name)
        if obj is None:
            avail = ", ".join(sorted(table)) or "none installed"
            problems.append(
                (
                    (section, "name"),
                    f"unknown {kind} {name!r}{_closest(name, list(table))} (available: {avail}){reg.broken_note()}",
                )
            )
            continue
        owner = _owner(reg, section, name)
        if allowed is not None and owner not in allowed:
            problems.append(
                (
                    (section, "name"),
                    f"{kind} {name!r} comes from plugin {owner!r}, which is not in `plugins:` ({', '.join(map(str, allowed))})",
                )
            )
        params = sec.get("params") or {}
        if not isinstance(params, dict):
            continue  # the core schema already reported it
        try:
            obj.params_model.model_validate(params)
        except ValidationError as exc:
            problems += pydantic_problems(exc, prefix=(section, "params"), fields=obj.params_model)
            continue
        check = getattr(obj, "check", None)  # optional: cross-section checks (quantization, step budgets, data files)
        if check is not None:
            for loc, msg in check(obj.params_model.model_validate(params), data):
                problems.append((tuple(loc.split(".")), msg))
        metric = data["eval"].get("metric") if isinstance(data.get("eval"), dict) else None
        if section == "task" and isinstance(metric, str):
            problem = metric_problem(metric, obj, name, 2)
            if problem:
                problems.append((("eval", "metric"), problem))
        elif section == "task" and metric is None:
            reported = reported_metrics(obj, 2)
            if obj.metric not in reported:  # the task's own metric: a bug in its plugin, not in the recipe
                problems.append(
                    (
                        ("task", "name"),
                        f"task {name!r} keeps the best checkpoint by its main metric "
                        f"{obj.metric!r} (Task.metric), but its compute_metrics does not report it: "
                        f"reports {', '.join(reported)}; fix the task's plugin, or set eval.metric",
                    )
                )
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("source"), str):
        problems += _check_source(model["source"], reg, allowed)
    problems += _check_plugin_configs(data, reg, allowed)
    problems += _check_quantization(data, reg)
    problems += _check_task_head(data, reg)
    return problems


def _check_plugin_configs(data: dict[str, Any], reg: Any, allowed: list[str] | None) -> list[tuple[tuple, str]]:
    """Each ``plugins_config.<name>`` names a registered section and validates through its plugin's model."""
    sections = data.get("plugins_config")
    if not isinstance(sections, dict):
        return []  # absent, or the core schema already reported it
    problems: list[tuple[tuple, str]] = []
    for name, values in sections.items():
        loc = ("plugins_config", str(name))
        section = reg.configs.get(name)
        if section is None:
            avail = ", ".join(sorted(reg.configs)) or "none installed"
            problems.append(
                (loc, f"no plugin takes settings {name!r}{_closest(str(name), list(reg.configs))} (available: {avail})")
            )
            continue
        owner = reg.owners.get(("configs", name))
        if allowed is not None and owner not in allowed:
            problems.append((loc, f"section {name!r} belongs to plugin {owner!r}, which is not in `plugins:`"))
        if isinstance(values, dict):
            try:
                section.params_model.model_validate(values)
            except ValidationError as exc:
                problems += pydantic_problems(exc, prefix=loc, fields=section.params_model)
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


def _check_quantization(data: dict[str, Any], reg: Any) -> list[tuple[tuple, str]]:
    model, method = data.get("model"), data.get("method")
    if not (isinstance(model, dict) and isinstance(model.get("quantization"), dict) and isinstance(method, dict)):
        return []
    bits = model["quantization"].get("bits")
    obj = reg.methods.get(method.get("name"))
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


def _check_task_head(data: dict[str, Any], reg: Any) -> list[tuple[tuple, str]]:
    """The task's objective needs a method that trains it (prefix tuning has no multiple-choice form) and, when
    transformers has its head for encoders only, an encoder."""
    from peftkit.plugin.contracts import head_mismatch, method_objectives

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
    if getattr(objective, "encoder_only", False):
        decoder = _local_decoder(data.get("model"))
        if decoder:
            return [
                (
                    ("model", "source"),
                    f"task {t.name!r} needs a {objective.name} head, which transformers has for "
                    f"encoders (bert, xlm-roberta, ...) but not for {decoder} models like this one; use an encoder",
                )
            ]
    mismatch = head_mismatch(t, m, reg) if m is not None and t is not None else None
    if mismatch is None:
        return []
    ok = sorted(n for n, x in reg.methods.items() if head_mismatch(t, x, reg) is None)
    why = getattr(m, "task_heads_note", "") or f"it lists only {', '.join(sorted(method_objectives(m)))} in task_heads"
    return [(("method", "name"), f"{mismatch}: {why}. Use one of: {', '.join(ok)}")]


def _local_decoder(model: Any) -> str | None:
    """The model_type of a ``local:`` model folder when it is a decoder family (read from config.json, nothing imported)."""
    import json

    from peftkit.plugin.architectures import DECODER, FAMILIES

    if not isinstance(model, dict) or not isinstance(model.get("source"), str):
        return None
    scheme, rest = split_source(model["source"])
    config = Path(rest).expanduser() / "config.json"
    if scheme != "local" or not config.is_file():
        return None
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None
    return kind if FAMILIES.get(kind) is DECODER else None


def _owner(reg: Any, section: str, name: str) -> str | None:
    return reg.owners.get(({"method": "methods", "task": "tasks", "model": "sources"}[section], name))


def split_source(ref: str) -> tuple[str, str]:
    """``scheme:rest``; a bare path (``/x``, ``./x``, ``~/x``) is ``local``, anything else without a scheme is ``hub``."""
    if ref.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(ref)):
        return "local", ref
    scheme, sep, rest = ref.partition(":")
    if sep and scheme and "/" not in scheme:
        return scheme, rest
    return "hub", ref


def _check_source(ref: str, reg: Any, allowed: list[str] | None = None) -> list[tuple[tuple, str]]:
    scheme, rest = split_source(ref)
    src = reg.sources.get(scheme)
    if src is None:
        avail = ", ".join(sorted(reg.sources)) or "none installed"
        return [
            (
                ("model", "source"),
                f"unknown model source scheme {scheme!r}{_closest(scheme, list(reg.sources))} (available: {avail}){reg.broken_note()}",
            )
        ]
    owner = _owner(reg, "model", scheme)
    if allowed is not None and owner not in allowed:
        return [
            (
                ("model", "source"),
                f"model source {scheme + ':'!r} comes from plugin {owner!r}, which is not in `plugins:` ({', '.join(map(str, allowed))})",
            )
        ]
    msg = src.check(rest)
    return [(("model", "source"), msg)] if msg else []
