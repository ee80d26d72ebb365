"""peftkit-hello: registers the ``lnfit`` method and the ``hello/keywords`` task.

peftkit imports this module through the ``peftkit`` entry point in pyproject.toml and calls the
hook implementations below. Keep imports here light: torch is imported only inside methods, so
``peftkit validate`` and ``peftkit plugins`` stay fast.
"""

from __future__ import annotations

from peftkit import hookimpl
from peftkit_hello.keywords import KeywordTask
from peftkit_hello.lnfit import LNFit


@hookimpl
def peftkit_register_methods() -> list:
    return [LNFit()]


@hookimpl
def peftkit_register_tasks() -> list:
    return [KeywordTask()]
