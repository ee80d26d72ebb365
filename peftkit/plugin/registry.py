"""Plugin discovery: the ``peftkit`` entry-point group, for built-ins and third parties alike.

``PEFTKIT_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name. A plugin that cannot be used (it
fails to import, misspells a hook, returns something that is not a method/task/objective/model source, names an
objective no plugin registers, or takes a name another plugin has) is left out and recorded with its error: ``peftkit plugins`` shows it, every
other command warns about it, and the others keep working; a recipe that needs something it would have
registered gets an error naming the broken plugin.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from peftkit.errors import PluginError
from peftkit.plugin import hookspecs
from peftkit.plugin.registration import add_plugin, where

GROUP = "peftkit"
DISABLE_ENV = "PEFTKIT_DISABLE_PLUGINS"
_CACHE: dict[tuple, Registry] = {}


@dataclass
class PluginInfo:
    """What ``peftkit plugins`` lists about one plugin: where it comes from, its hooks, the names it registers
    per kind, and ``summaries``: each registered object's ``summary`` by kind and name (a model source's says what
    its models are and under which licence)."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    hooks: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    objectives: list[str] = field(default_factory=list)
    model_sources: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    summaries: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Registry:
    """Everything the installed plugins provide, by name."""

    pm: pluggy.PluginManager
    methods: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)  # plugins_config section name -> PluginConfig
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # plugin name -> error
    disabled: list[str] = field(default_factory=list)  # installed, skipped through PEFTKIT_DISABLE_PLUGINS
    disabled_info: dict[str, PluginInfo] = field(default_factory=dict)  # what those are, read without importing
    unknown_disabled: list[str] = field(default_factory=list)  # names in PEFTKIT_DISABLE_PLUGINS nothing has
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, name) -> plugin

    @property
    def hook(self):
        return self.pm.hook

    @property
    def default_objective(self) -> str | None:
        """The objective a task that names none gets: the one registered with ``default = True``."""
        return next((n for n, o in self.objectives.items() if getattr(o, "default", False)), None)

    def objective_of(self, task: Any, override: str | None = None) -> Any:
        """The Objective object a task trains (``override``, a recipe's ``task.objective``, else the task's
        ``objective``/``head``, else the default); PluginError if none, or if the override cannot stand in."""
        from peftkit.plugin.contracts import task_objective

        if override is not None:
            return self._override(task, override)
        name = task_objective(task) or self.default_objective
        obj = self.objectives.get(name) if name else None
        if obj is None:
            raise PluginError(
                f"task {getattr(task, 'name', task)!r} needs objective {name!r}, which no plugin registers "
                f"(registered: {', '.join(self.objectives) or 'none'}){self.broken_note()}"
            )
        return obj

    def _override(self, task: Any, name: str) -> Any:
        """``task.objective``: an objective marked ``overrides``, for a task whose own objective is labelled."""
        obj, own = self.objectives.get(name), self.objective_of(task)
        able = sorted(n for n, o in self.objectives.items() if getattr(o, "overrides", False))
        if obj is None or not getattr(obj, "overrides", False) or not own.labelled:
            why = "the task predicts no labels" if not own.labelled else f"use one of: {', '.join(able) or 'none'}"
            raise PluginError(
                f"task.objective: {name!r} cannot stand in for task {getattr(task, 'name', task)!r}'s own objective "
                f"{own.name!r} ({why}){self.broken_note()}"
            )
        return obj

    def hooks_for(self, allowed: list[str] | None) -> Any:
        """The hooks of a recipe's run: every plugin's, or, with a ``plugins:`` allow-list, only the listed ones'."""
        if allowed is None:
            return self.pm.hook
        return _SubsetHooks(self.pm, [self.pm.get_plugin(n) for n in self.plugins if n not in allowed])

    def provider(self, table: str, name: str) -> PluginInfo | None:
        """The plugin that registered ``name`` in ``table`` (``methods``, ``tasks``, ``sources``), or None."""
        owner = self.owners.get((table, name))
        return self.plugins.get(owner) if owner else None

    def broken_note(self) -> str:
        """Why a name may be missing: plugins that failed to load or were disabled (empty when none)."""
        note = ""
        if self.broken:
            names = ", ".join(sorted(self.broken))
            note += (
                f" (plugins that failed to load and may provide it: {names}; run `peftkit plugins` for their errors)"
            )
        if self.disabled:
            note += f" (plugins disabled by PEFTKIT_DISABLE_PLUGINS: {', '.join(sorted(self.disabled))})"
        return note

    def problems(self) -> list[str]:
        """One line per plugin that could not be loaded, and per unknown name in PEFTKIT_DISABLE_PLUGINS."""
        lines = [
            f"plugin {name!r} was not loaded: {error}. Its hooks will not run; fix it, or skip it "
            f"without this warning: PEFTKIT_DISABLE_PLUGINS={name}"
            for name, error in sorted(self.broken.items())
        ]
        if self.unknown_disabled:
            installed = ", ".join(sorted([*self.plugins, *self.broken, *self.disabled]))
            lines.append(
                f"PEFTKIT_DISABLE_PLUGINS names {', '.join(map(repr, self.unknown_disabled))}, which no installed "
                f"plugin is called (installed: {installed})"
            )
        return lines


class _SubsetHooks:
    """``registry.hook`` minus some plugins: ``hooks.peftkit_on_eval(...)`` calls only the others."""

    def __init__(self, pm: pluggy.PluginManager, remove: list[Any]) -> None:
        self._pm, self._remove = pm, remove

    def __getattr__(self, name: str) -> Any:  # only for names not cached yet
        caller = self._pm.subset_hook_caller(name, remove_plugins=self._remove)
        setattr(self, name, caller)
        return caller


def _disabled() -> set[str]:
    raw = os.environ.get("PEFTKIT_DISABLE_PLUGINS", "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def _entry_points() -> list[md.EntryPoint]:
    eps = md.entry_points(group=GROUP)
    seen: dict[str, md.EntryPoint] = {}
    for ep in eps:  # the same dist can appear twice (egg-info + dist-info); keep the first
        seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda e: e.name)


def _info(ep: md.EntryPoint) -> PluginInfo:
    dist = ep.dist
    if dist is None:
        return PluginInfo(ep.name, None, None, ep.value)
    meta = dist.metadata  # parsed anew on every access (the whole METADATA file): read it once per plugin
    return PluginInfo(ep.name, meta["Name"], meta["Version"], ep.value)


def _own(info: PluginInfo) -> bool:
    return info.distribution == "peftkit"


def owner(reg: Registry, table: str, name: str) -> str:
    """``plugin 'lora' (distribution peftkit 0.1.0)``: who registered ``name`` in ``table`` (``methods``, ``tasks``,
    ``sources``); empty when nobody did."""
    plugin = reg.owners.get((table, name))
    if plugin is None:
        return ""
    info = reg.plugins.get(plugin)
    dist = f" (distribution {info.distribution} {info.version})" if info and info.distribution else ""
    return f"plugin {plugin!r}{dist}"


def build_registry(extra_plugins: dict[str, object] | None = None) -> Registry:
    """Load every entry point of the ``peftkit`` group (plus ``extra_plugins``, for tests).

    A plugin that cannot be used (fails to import, a hook implementation its spec does not allow, a misspelt
    hook, registration hooks returning something that is not a list of methods/tasks/model sources, or a
    name another plugin already registered) is left out as a whole and recorded in ``broken``; the others work.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)
    disabled = _disabled()
    eps = _entry_points()
    reg.unknown_disabled = sorted(disabled - {ep.name for ep in eps} - set(extra_plugins or {}))
    infos = {ep.name: _info(ep) for ep in eps}
    loaded = []
    # peftkit's own plugins first, so a third-party name clash never displaces a built-in; then by name
    for ep in sorted(eps, key=lambda e: (not _own(infos[e.name]), e.name)):
        if ep.name in disabled:
            reg.disabled.append(ep.name)
            reg.disabled_info[ep.name] = infos[ep.name]
            continue
        try:
            loaded.append((ep, ep.load()))
        except Exception as exc:  # a broken plugin must not take the others down
            reg.broken[ep.name] = f"{type(exc).__name__}: {exc}{where(exc)}"
            if os.environ.get("PEFTKIT_DEBUG"):
                traceback.print_exc(file=sys.stderr)
    # built-ins still first; within each group plugins that register objectives go first, so that every task and
    # method can be checked against the objectives it names when it registers
    loaded.sort(key=lambda item: (not _own(infos[item[0].name]), not hasattr(item[1], "peftkit_register_objectives")))
    for ep, module in loaded:
        add_plugin(reg, ep.name, module, infos[ep.name])
    extras = sorted((extra_plugins or {}).items(), key=lambda kv: not hasattr(kv[1], "peftkit_register_objectives"))
    for name, obj in extras:
        if name not in disabled:
            add_plugin(reg, name, obj, PluginInfo(name, None, None, getattr(obj, "__name__", repr(obj))))
    reg.disabled.sort()
    return reg


def get_registry(*, refresh: bool = False) -> Registry:
    """The process-wide registry (rebuilt when PEFTKIT_DISABLE_PLUGINS changes)."""
    key = (os.environ.get("PEFTKIT_DISABLE_PLUGINS", ""),)
    if refresh or key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = build_registry()
    return _CACHE[key]


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy PluginManager with every installed peftkit plugin registered."""
    return get_registry().pm


def list_plugins(reg: Registry | None = None) -> list[dict[str, Any]]:
    """JSON-ready description of every installed plugin: loaded ones with what they register, broken ones
    with their error, disabled ones with ``"disabled"`` saying what disabled them (nothing of theirs is
    imported, so their hooks and names are not known)."""
    reg = reg or get_registry()
    out: list[dict[str, Any]] = [dict(vars(info)) for info in reg.plugins.values()]
    for name, error in reg.broken.items():
        out.append({"name": name, "error": error})
    for info in reg.disabled_info.values():
        known = {"name": info.name, "distribution": info.distribution, "version": info.version, "module": info.module}
        out.append({**known, "disabled": DISABLE_ENV})
    return sorted(out, key=lambda d: d["name"])
