"""Lifecycle hooks that belong to a method fire only in runs of that method.

The rule: a Method may carry an object in its optional ``hooks`` attribute, holding ``@hookimpl`` lifecycle
hooks (``peftkit_model_ready`` and the ``peftkit_on_*`` hooks). A run registers that object with the plugin
manager when it starts and unregisters it when it ends, so those hooks fire for the run's method and no other
(AdaLoRA's rank-budget schedule lives there). A plugin's module-level hooks still fire in every run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pluggy

from peftkit.errors import PluginError
from peftkit.plugin import hookspecs

LIFECYCLE = frozenset(n for n in dir(hookspecs) if n.startswith("peftkit_on_")) | {"peftkit_model_ready"}


def _check(pm: Any, hooks: Any, method: str) -> None:
    """A method's hooks object may implement lifecycle hooks only, each matching its spec."""
    bad = [c.name for c in pm.get_hookcallers(hooks) or [] if c.name not in LIFECYCLE or not c.has_spec()]
    if bad:
        raise PluginError(
            f"method {method!r}: its hooks object implements {', '.join(sorted(bad))}, which is not a lifecycle "
            f"hook; a method's hooks may be {', '.join(sorted(LIFECYCLE))} (others belong in the plugin module)"
        )


@contextlib.contextmanager
def method_hooks(pm: Any, method: Any) -> Iterator[None]:
    """Register ``method.hooks`` (if any) with ``pm`` for the block, and unregister it afterwards.

    Raises:
        PluginError: the hooks object implements a hook that is not a lifecycle hook, or is misspelt.
    """
    hooks = getattr(method, "hooks", None)
    if hooks is None or pm.is_registered(hooks):  # nothing to scope, or an enclosing run holds it already
        yield
        return
    try:
        pm.register(hooks, name=f"method:{method.name}")
    except (ValueError, pluggy.PluginValidationError) as exc:  # arguments its spec lacks, a name taken
        raise PluginError(f"method {method.name!r}: its hooks object cannot be registered: {exc}") from None
    try:
        _check(pm, hooks, method.name)
        yield
    finally:
        pm.unregister(hooks)
