"""Into service: ``peftkit export`` (a standard transformers folder + model card) and ``peftkit serve``
(an HTTP service with dynamic batching, several adapters on one base, API keys, Prometheus metrics and
masked logs).

Nothing here is imported when the CLI starts: fastapi, uvicorn and torch load only when a command runs.
"""

from __future__ import annotations

__all__ = ["export_run"]


def __getattr__(name: str):  # lazy: ``from peftkit.serve import export_run`` without importing torch up front
    if name == "export_run":
        from peftkit.serve.export import export_run

        return export_run
    raise AttributeError(name)
