"""Plugin discovery: the ``peftkit`` entry-point group, for built-ins and third parties alike.

``PEFTKIT_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name. A plugin that fails to import is
recorded with its error (``peftkit plugins`` shows it) and the others keep working; a recipe that
needs something it would have registered gets an error naming the broken plugin.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from peftkit import hookspecs
from peftkit.errors import PluginError

GROUP = "peftkit"
_CACHE: dict[tuple, Registry] = {}


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    module: str
    hooks: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    model_sources: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Everything the installed plugins provide, by name."""

    pm: pluggy.PluginManager
    methods: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # plugin name -> error
    disabled: list[str] = field(default_factory=list)  # installed, skipped through PEFTKIT_DISABLE_PLUGINS

    @property
    def hook(self):
        return self.pm.hook

    def hooks_for(self, allowed: list[str] | None) -> Any:
        """The hooks of a recipe's run: every plugin's, or, with a ``plugins:`` allow-list, only the listed ones'."""
        if allowed is None:
            return self.pm.hook
        return _SubsetHooks(self.pm, [self.pm.get_plugin(n) for n in self.plugins if n not in allowed])

    def broken_note(self) -> str:
        """Why a name may be missing: plugins that failed to load or were disabled (empty when none)."""
        note = ""
        if self.broken:
            names = ", ".join(sorted(self.broken))
            note += f" (plugins that failed to load and may provide it: {names}; run `peftkit plugins` for their errors)"
        if self.disabled:
            note += f" (plugins disabled by PEFTKIT_DISABLE_PLUGINS: {', '.join(sorted(self.disabled))})"
        return note


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


def _collect(reg: Registry, hook_name: str, key: str, target: dict, attr: str) -> None:
    hook = getattr(reg.pm.hook, hook_name)
    owners: dict[str, str] = {}
    for impl in hook.get_hookimpls():
        plugin_name = reg.pm.get_name(impl.plugin) or "?"
        for obj in impl.function() or []:
            name = getattr(obj, key)
            if name in target:
                raise PluginError(
                    f"{attr[:-1]} name {name!r} is registered twice: by plugin {owners[name]!r} and by "
                    f"{plugin_name!r}; disable one with PEFTKIT_DISABLE_PLUGINS={plugin_name}"
                )
            target[name] = obj
            owners[name] = plugin_name
            if plugin_name in reg.plugins:
                getattr(reg.plugins[plugin_name], attr).append(name)


def build_registry(extra_plugins: dict[str, object] | None = None) -> Registry:
    """Load every entry point of the ``peftkit`` group (plus ``extra_plugins``, for tests)."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)
    disabled = _disabled()
    for ep in _entry_points():
        if ep.name in disabled:
            reg.disabled.append(ep.name)
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            reg.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            if os.environ.get("PEFTKIT_DEBUG"):
                traceback.print_exc(file=sys.stderr)
            continue
        dist = ep.dist
        reg.plugins[ep.name] = PluginInfo(
            ep.name, dist.metadata["Name"] if dist else None, dist.version if dist else None, ep.value
        )
    for name, obj in (extra_plugins or {}).items():
        if name not in disabled:
            pm.register(obj, name=name)
            reg.plugins[name] = PluginInfo(name, None, None, getattr(obj, "__name__", repr(obj)))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook (misspelt?): {exc}") from exc
    for name, info in reg.plugins.items():
        plugin = pm.get_plugin(name)
        info.hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
    _collect(reg, "peftkit_register_methods", "name", reg.methods, "methods")
    _collect(reg, "peftkit_register_tasks", "name", reg.tasks, "tasks")
    _collect(reg, "peftkit_register_model_sources", "scheme", reg.sources, "model_sources")
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
    """JSON-ready description of every plugin, broken ones included (with their error)."""
    reg = reg or get_registry()
    out: list[dict[str, Any]] = [dict(vars(info)) for info in reg.plugins.values()]
    for name, error in reg.broken.items():
        out.append({"name": name, "error": error})
    return sorted(out, key=lambda d: d["name"])
