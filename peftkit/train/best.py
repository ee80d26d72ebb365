"""Evaluation during training, and the best model so far in ``output_dir/model``."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterator
from typing import Any

from peftkit import run_dir
from peftkit.build.setup import Setup
from peftkit.errors import PeftkitError
from peftkit.evaluation.evaluate import eval_batch_size, evaluate
from peftkit.plugin.state import RunState
from peftkit.recipe import selection_metric

log = logging.getLogger("peftkit")


@contextlib.contextmanager
def paused(state: RunState) -> Iterator[None]:
    """Count the block's wall time as a pause of training (not in train.seconds / samples_per_second)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        state.paused_seconds += time.perf_counter() - t0


def better(new: float, best: float | None) -> bool:
    """Whether ``new`` beats the best so far; a NaN never does, and anything beats a NaN (a first model is
    always kept, so output_dir/model exists)."""
    if best is None or math.isnan(best):
        return True
    return not math.isnan(new) and new > best


class BestModel:
    """Evaluates the training model on the dev split and keeps the best one (by the selection metric) on disk."""

    def __init__(self, setup: Setup, state: RunState, acc: Any) -> None:
        self.setup, self.state, self.acc = setup, state, acc
        self.metric = selection_metric(state.recipe, state.task)

    def evaluate(self) -> dict[str, float]:
        """Evaluate now, record it in ``state.history``, fire ``peftkit_on_eval``, save the model if it is the best."""
        with paused(self.state):
            s, state = self.setup, self.state
            metrics, _ = evaluate(
                state.model, s.data["dev"], s.task, eval_batch_size(s.recipe), s.pad_id, self.acc.device,
                self.acc.mixed_precision,
            )  # fmt: skip
            self._check(metrics)
            entry = {"step": state.step, "epoch": state.epochs_done, **metrics}
            state.history.append(entry)
            log.info("eval step %d: %s", state.step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            for k, v in metrics.items():
                if not math.isfinite(v):
                    log.warning(
                        "eval step %d: %s is %s (training diverged, or the task's compute_metrics returned no "
                        "number); metrics.json records it as null, and it is never the best",
                        state.step,
                        k,
                        v,
                    )
            s.hooks.peftkit_on_eval(state=state, metrics=metrics)
            key = self.metric
            if better(metrics[key], None if state.best is None else state.best[key]):  # a tie keeps the earlier
                state.best = entry
                self.save()
                log.info("new best %s=%.4f at step %d: saved to %s", key, metrics[key], state.step, self.folder)
            return metrics

    def _check(self, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            r, task = self.state.recipe, self.state.task
            where = "eval.metric" if r.eval.metric else f"task {task.name!r} (its Task.metric)"
            raise PeftkitError(
                f"{where}: {self.metric!r} is not among the metrics the task's compute_metrics returned "
                f"({', '.join(sorted(metrics))})"
            )

    @property
    def folder(self) -> Any:
        return self.state.output_dir / "model"

    def save(self) -> None:
        """Write the model (method's files and tokenizer) to ``output_dir/model``, swapped in whole."""
        if not self.acc.is_main_process:
            return
        s, state = self.setup, self.state
        tmp = state.output_dir / ".model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        s.method.save(self.acc.unwrap_model(state.model), tmp)
        s.tokenizer.save_pretrained(str(tmp))
        run_dir.replace_dir(tmp, self.folder)
        s.hooks.peftkit_on_save(state=state, path=self.folder)
