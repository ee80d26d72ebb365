"""What a finished run reports: ``metrics.json`` (training facts, the final evaluation, provenance)."""

from __future__ import annotations

import json
import logging
from typing import Any

from peftkit.build.setup import Setup
from peftkit.kit.peft_method import count_parameters
from peftkit.plugin.state import RunState

log = logging.getLogger("peftkit")


def log_parameters(model: Any, method: str) -> dict[str, Any]:
    """Count trainable and total parameters (``metrics.json`` ``params``) and log them."""
    params = count_parameters(model)
    log.info(
        "method %s: %s of %s parameters trainable (%.4f%%)",
        method,
        f"{params['trainable']:,}",
        f"{params['total']:,}",
        params["percent"],
    )
    return params


def loss_moved(losses: list[float]) -> bool:
    """False when the training loss is flat: first and last tenth of the steps agree within 1%."""
    if len(losses) < 20:
        return True
    k = max(2, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return abs(first - last) > 0.01 * max(abs(first), 1e-8)


def train_facts(state: RunState, seconds: float) -> dict[str, Any]:
    """``metrics.json`` ``train``: time over every leg of the run (pauses excluded), throughput, steps, losses."""
    return {
        "seconds": round(seconds, 3),
        "paused_seconds": round(state.paused_seconds, 3),
        "samples": state.samples,
        "samples_per_second": round(state.samples / max(seconds, 1e-9), 3),
        "steps": state.step,
        "epochs": state.epochs_done,
        "loss": state.losses,
    }


def provenance(registry: Any, method: str, task: str) -> dict[str, dict[str, Any]]:
    """Which plugin, distribution and version provided the run's method and task (None where unknown: a plugin
    registered in code rather than installed)."""
    out = {}
    for kind, table, name in (("method", "methods", method), ("task", "tasks", task)):
        info = registry.provider(table, name) if hasattr(registry, "provider") else None
        out[kind] = {
            "name": name,
            "plugin": info.name if info else None,
            "distribution": info.distribution if info else None,
            "version": info.version if info else None,
        }
    return out


def _log_outcome(state: RunState, metric: str) -> None:
    facts = state.summary["method_facts"]
    if facts:
        log.info("method %s facts: %s", state.method.name, json.dumps(facts, default=str))
    if state.best is not None:
        log.info(
            "output_dir/model holds the best evaluation: step %d of %d (epoch %.2f), %s=%.4f",
            state.best["step"],
            state.step,
            state.best["epoch"],
            metric,
            state.best[metric],
        )
    if not loss_moved(state.losses):
        msg = (
            f"training loss did not move ({state.losses[0]:.4f} → {state.losses[-1]:.4f}); check train.lr and the data"
        )
        log.warning(msg)
        state.summary["warnings"] = [msg]


def summarize(setup: Setup, state: RunState, acc: Any, meter: Any, seconds: float, metric: str) -> dict[str, Any]:
    """Fill ``state.summary`` with training facts and peak memory, from the training model (before it is
    released and the final evaluation loads the saved one)."""
    summary = state.summary
    summary.update(
        train=train_facts(state, seconds),
        history=state.history,
        best=state.best,
        method=state.method.name,
        task=state.task.name,
        plugins=provenance(setup.registry, state.method.name, state.task.name),
        method_facts=state.method.facts(acc.unwrap_model(state.model)),
    )
    _log_outcome(state, metric)
    summary["memory"] = meter.report(acc.unwrap_model(state.model))
    return summary


def add_final_evaluation(summary: dict[str, Any], setup: Setup, state: RunState, device: Any) -> None:
    """The final evaluation of the saved model (main process), into ``summary``."""
    from peftkit.evaluation.runs import final_evaluation

    final = final_evaluation(setup, state, device)
    summary.update({k: v for k, v in final.items() if k != "warnings"})
    if final.get("warnings"):
        summary["warnings"] = summary.get("warnings", []) + final["warnings"]
