"""The task conformance suite (``check_task``): what a run and ``peftkit predict`` rely on, without a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError
from peftkit.kit.conformance.common import ConformanceError


def check_task(task: Any, params: dict | Any | None = None) -> dict[str, int]:
    """The task conformance suite: what a run and ``peftkit predict`` rely on, without a model.

    Loads every split the task declares (with ``params``: a dict for its ``params_model``, or an instance)
    and checks that: the task's objective is registered; the label space is a non-empty list of distinct strings
    (may be empty for an objective that is not ``labelled``); every row is an
    :class:`~peftkit.plugin.contracts.Example` with string text and an int label id inside it (train and dev rows
    all labelled; test rows may not be); ``compute_metrics`` reports the task's own ``metric`` as a number,
    and a perfect prediction scores at least as well as a wrong one; ``prediction_file`` is a bare file name;
    ``format_prediction`` gives a JSON-serialisable dict for a row of the last split.

    Returns:
        ``{split: rows}``.

    Raises:
        ConformanceError: naming the task and what is wrong.
    """
    from peftkit.build.setup import checked_examples
    from peftkit.plugin.contracts import head_problem
    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    if isinstance(task, str):
        task = reg.tasks[task]
    name = getattr(task, "name", type(task).__name__)

    def fail(msg: str) -> ConformanceError:
        return ConformanceError(f"task {name!r}: {msg}")

    bad_head = head_problem(task, "Task", list(reg.objectives))  # the registration rule, for a task not registered
    if bad_head:
        raise fail(f"has {bad_head}")
    objective = reg.objective_of(task)
    p = params if params is not None and not isinstance(params, dict) else task.params_model(**(params or {}))
    labels = list(task.label_names(p))
    if (
        (not labels and objective.labelled)
        or len(set(labels)) != len(labels)
        or not all(isinstance(x, str) for x in labels)
    ):
        raise fail(f"label_names() must be distinct strings, got {labels!r}")
    rows: dict[str, int] = {}
    last: list[Any] = []
    for split in task.splits:
        try:
            examples = checked_examples(task.load_split(p, split), name, split, len(labels), objective)
        except PeftkitError as exc:
            raise fail(str(exc)) from exc
        rows[split] = len(examples)
        last = examples or last
    _check_metrics(task, len(labels), fail)
    _check_predictions(task, p, last, fail)
    return rows


def _check_metrics(task: Any, n_labels: int, fail: Any) -> None:
    """``compute_metrics`` reports the task's metric as a number, and a perfect prediction beats a wrong one."""
    import numpy as np

    space = n_labels or 2  # an objective without a label space (masked LM) predicts token ids: any two do
    ids = np.arange(max(n_labels, 2)) % space
    perfect = task.compute_metrics(ids, ids)
    if task.metric not in perfect:
        raise fail(f"compute_metrics() reports {sorted(perfect)}, not the task's own metric {task.metric!r}")
    wrong = task.compute_metrics((ids + 1) % space, ids)
    try:
        best, worse = float(perfect[task.metric]), float(wrong[task.metric])
    except (TypeError, ValueError) as exc:
        raise fail(f"compute_metrics()[{task.metric!r}] is not a number: {perfect[task.metric]!r}") from exc
    if not best >= worse:
        raise fail(
            f"{task.metric} of a perfect prediction ({best}) is below a wrong one's ({worse}); "
            "the best checkpoint is the one with the highest metric"
        )


def _check_predictions(task: Any, p: Any, last: list[Any], fail: Any) -> None:
    """``prediction_file`` is a bare file name; ``format_prediction`` of a row is a JSON-serialisable dict."""
    file = task.prediction_file(p)
    if not isinstance(file, str) or not file or Path(file).name != file:
        raise fail(f"prediction_file() must be a bare file name (written into the run folder), got {file!r}")
    if last:
        line = task.format_prediction(last[0], 0, p)
        try:
            json.dumps(line)
        except (TypeError, ValueError) as exc:
            raise fail(f"format_prediction() must give a JSON-serialisable dict, got {line!r}: {exc}") from exc
        if not isinstance(line, dict):
            raise fail(f"format_prediction() must give a dict (one line of {file}), got {type(line).__name__}")
