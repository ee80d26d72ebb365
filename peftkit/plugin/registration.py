"""Registering one plugin: its hooks checked against the specs, the objects its registration hooks return checked
against the protocols (and against the names other plugins took), then added to the registry's tables — or the
plugin left out as a whole with the reason recorded in ``registry.broken``."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pluggy

from peftkit.errors import PluginError
from peftkit.plugin import hookspecs

# each registration hook: the protocol its objects follow, the attribute naming them, the Registry table they
# go into and the PluginInfo list that names them
_KINDS = (
    ("peftkit_register_methods", "Method", "name", "methods", "methods"),
    ("peftkit_register_objectives", "Objective", "name", "objectives", "objectives"),
    ("peftkit_register_tasks", "Task", "name", "tasks", "tasks"),
    ("peftkit_register_model_sources", "ModelSource", "scheme", "sources", "model_sources"),
    ("peftkit_register_plugin_configs", "PluginConfig", "name", "configs", "configs"),
)


def where(exc: BaseException) -> str:
    """`` (file.py:12)`` for the innermost frame of an exception, else empty."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no hook spec (misspelt names). Like pluggy's
    ``check_pending``, names starting with ``_`` are not hooks (an imported hookimpl kept as ``_lora``)."""
    import difflib

    specs = [n for n in dir(hookspecs) if n.startswith("peftkit_")]
    bad = []
    for caller in pm.get_hookcallers(plugin) or []:
        if (
            caller.name.startswith("_")
            or caller.has_spec()
            or all(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin)
        ):
            continue
        close = difflib.get_close_matches(caller.name, specs, n=1)
        bad.append(f"{caller.name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return bad


def _registered(pm: pluggy.PluginManager, plugin: object, known: list[str]) -> list[tuple[str, str, str, list[Any]]]:
    """``(table, info list, name attribute, objects)`` that ``plugin``'s own registration hooks return, checked
    against the protocols and the objectives ``known`` so far (PluginError if not)."""
    from peftkit.plugin import contracts as interfaces

    known = list(known)
    got = []
    for hook_name, protocol, key, table, info_attr in _KINDS:
        impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
        objs: list[Any] = []
        for impl in impls:
            result = impl.function()
            if result is None:
                continue
            if not isinstance(result, (list, tuple)):
                raise PluginError(
                    f"{hook_name}() returned {type(result).__name__} {result!r:.60}, not a list: return [obj]"
                )
            objs.extend(result)
        for obj in objs:
            what = f"{hook_name}() returned {getattr(obj, '__name__', None) or type(obj).__name__}"
            if isinstance(obj, type):
                raise PluginError(f"{what}, a class: register an instance ({obj.__name__}())")
            missing = interfaces.missing_members(obj, getattr(interfaces, protocol))
            if missing:
                raise PluginError(
                    f"{what} without {', '.join(missing)}, which a {protocol} must have "
                    f"(see the {protocol} protocol in peftkit.plugin.contracts)"
                )
            if not isinstance(getattr(obj, key), str) or not getattr(obj, key):
                raise PluginError(f"{what} whose {key} is {getattr(obj, key)!r}, not a name")
            if protocol == "Objective":
                known.append(obj.name)  # tasks and methods of the same plugin may name it
            bad_head = interfaces.head_problem(obj, protocol, known)
            if bad_head:
                raise PluginError(f"{what} with {bad_head}")
        got.append((table, info_attr, key, objs))
    return got


def add_plugin(reg: Any, name: str, plugin: object, info: Any) -> None:
    """Register one plugin, or record why it cannot be used and leave it out entirely."""
    pm = reg.pm
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy.PluginValidationError: a hookimpl whose arguments its spec lacks
        if pm.get_name(plugin) is not None:  # pluggy < 1.7 keeps the hooks it added before the bad one
            pm.unregister(plugin)
        reg.broken[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return
    try:
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            raise PluginError(
                f"implements unknown hook {', '.join(unknown)}; the hooks are listed in the docs' Hooks reference"
            )
        got = _registered(pm, plugin, list(reg.objectives))
        for table, _, key, objs in got:
            for obj in objs:
                other = reg.owners.get((table, getattr(obj, key)))
                if other:
                    raise PluginError(
                        f"{table[:-1]} name {getattr(obj, key)!r} is already registered by plugin {other!r}; "
                        f"rename it, or set PEFTKIT_DISABLE_PLUGINS={other} to use this one instead"
                    )
        _check_default(reg, got)
    except Exception as exc:  # also what a registration hook itself raises
        pm.unregister(plugin)
        msg = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}{where(exc)}"
        reg.broken[name] = msg
        return
    for table, info_attr, key, objs in got:
        for obj in objs:
            getattr(reg, table)[getattr(obj, key)] = obj
            reg.owners[(table, getattr(obj, key))] = name
            getattr(info, info_attr).append(getattr(obj, key))
            info.summaries.setdefault(info_attr, {})[getattr(obj, key)] = str(obj.summary)
    info.hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
    reg.plugins[name] = info


def _check_default(reg: Any, got: list[tuple[str, str, str, list[Any]]]) -> None:
    """At most one objective is the default for tasks that name none."""
    mine = [o.name for table, _, _, objs in got if table == "objectives" for o in objs if getattr(o, "default", False)]
    current = reg.default_objective
    if current and mine or len(mine) > 1:
        first = current or mine[0]
        owner = reg.owners.get(("objectives", first), "this plugin")
        raise PluginError(
            f"objective {mine[-1]!r} sets default = True, but {first!r} (plugin {owner!r}) already is the default "
            "objective for tasks that name none; only one objective may be the default"
        )
