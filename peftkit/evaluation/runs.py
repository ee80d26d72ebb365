"""Loading a finished run and using it: final evaluation from disk, test-split predictions."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from peftkit import run_dir as outputs
from peftkit.build.setup import Setup, build_model, load_split, prepare
from peftkit.errors import PeftkitError
from peftkit.evaluation.evaluate import eval_batch_size, evaluate, mixed_precision
from peftkit.evaluation.metrics import COLLAPSED_SHARE
from peftkit.recipe import selection_metric

log = logging.getLogger("peftkit")


def final_evaluation(s: Setup, state: Any, device: Any) -> dict[str, Any]:
    """Evaluate the model *as saved* (fresh base + saved method), so the reported number is the artifact's."""
    model_dir = state.output_dir / "model"
    model, _ = build_model(s, trained=model_dir)
    model, merged = _merged_for_inference(s, model)
    model.to(device)
    out: dict[str, Any] = {}
    bs, mp = eval_batch_size(s.recipe), mixed_precision(s.recipe)
    if "dev" in s.data:
        t0 = time.perf_counter()
        metrics, preds = evaluate(model, s.data["dev"], s.task, bs, s.pad_id, device, mp)
        seconds = time.perf_counter() - t0
        out["final"] = metrics
        out["eval"] = {
            "seconds": round(seconds, 3),
            "samples": len(s.data["dev"]),
            "samples_per_second": round(len(s.data["dev"]) / max(seconds, 1e-9), 3),
            "merged": merged,
            "mixed_precision": mp,
        }
        key = selection_metric(s.recipe, s.task)
        if s.objective.labelled:
            out["eval"]["top_class_share"] = _collapse_check(s, out, preds, metrics, key)
        # merged weights round differently: allow a near-tie or two to flip, never more (a few more in half precision)
        tol = (2.5 if mp == "no" else 5.5) / len(s.data["dev"]) if merged else 1e-9
        if state.best is not None and abs(metrics[key] - state.best[key]) > tol:
            log.warning(
                "reloaded model gives %s=%.6f but %.6f was measured in training", key, metrics[key], state.best[key]
            )
    if s.recipe.eval.predict:
        path, test = write_test_predictions(s, model, state.output_dir, device)
        out["predictions"] = str(path)
        if test is not None:
            out["test"] = test
    return out


def _collapse_check(s: Setup, out: dict[str, Any], preds: np.ndarray, metrics: dict[str, float], key: str) -> float:
    """The share of dev rows given the most frequent answer; a warning (also in metrics.json) when the model
    answers one label for nearly every row."""
    counts = np.bincount(preds, minlength=len(s.labels))
    top = int(counts.argmax())
    share = round(float(counts[top] / max(len(preds), 1)), 4)
    if len(s.labels) > 1 and share >= COLLAPSED_SHARE:
        wording = getattr(s.objective, "collapse_wording", None)
        answer, what = wording(top, s.labels) if wording else (repr(s.labels[top]), "one class")
        msg = (
            f"the model answers {answer} for {share:.1%} of the dev rows: it has "
            f"collapsed to {what}, and {key}={metrics[key]:.4f} is about what always answering it scores. "
            "Try another train.lr, more steps, or a larger model"
        )
        log.warning(msg)
        out["warnings"] = [msg]
    return share


def _merged_for_inference(s: Setup, model: Any) -> tuple[Any, bool]:
    """The reloaded model with the method merged into its (private, freshly loaded) base when
    ``eval.merged`` allows and the method can merge; ``(model, merged?)``."""
    if not s.recipe.eval.merged or not getattr(s.method, "can_merge", False) or s.recipe.model.quantization:
        return model, False
    model = s.method.merge(model)
    model.eval()
    return model, True


def write_test_predictions(s: Setup, model: Any, out_dir: Path, device: Any) -> tuple[Path, dict[str, float] | None]:
    """Predict the task's test split and write its submission file (e.g. ``afqmc_predict.json``).

    Returns the file and, when every test row has a label (a held-out labelled test set, such as FewCLUE's
    ``test_public`` or an own-data test file with labels), the task's metrics on it; else ``None``."""
    if "test" not in s.task.splits:
        raise PeftkitError(f"task {s.task.name!r} has no test split to predict")
    per_row = getattr(s.objective, "row_predictions", None)  # an objective predicting more than a label per row
    if not s.objective.labelled and per_row is None:
        raise PeftkitError(
            f"task {s.task.name!r} trains objective {s.objective.name!r}, which predicts no label per row; "
            "there is nothing to write a predictions file of (set eval.predict: false)"
        )
    data = s.data.get("test") or load_split(s, "test")
    bs = eval_batch_size(s.recipe)
    metrics, preds = evaluate(model, data, s.task, bs, s.pad_id, device, mixed_precision(s.recipe))
    answers = per_row(preds, data) if per_row is not None else [int(p) for p in preds]
    rows = [s.task.format_prediction(ex, p, s.tparams) for ex, p in zip(data.examples, answers)]
    path = out_dir / s.task.prediction_file(s.tparams)
    outputs.write_predictions(path, rows)
    log.info("wrote %d predictions to %s", len(rows), path)
    labelled = getattr(data, "labelled_count", None)
    labelled = int((data.labels >= 0).sum()) if labelled is None else int(labelled)
    if not labelled:  # an unlabelled (or empty) test split: predictions only
        return path, None
    if labelled < len(data):
        log.warning(
            "test split: %d of %d rows have a label; test metrics need every row labelled, so none are reported",
            labelled,
            len(data),
        )
        return path, None
    log.info("test (%d labelled rows): %s", len(data), ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return path, metrics


# what `peftkit predict` may change about a finished run: where the data is and how inference runs, never
# what the model is (method, model, labels must stay as trained)
PREDICT_OVERRIDABLE = ("task.params.", "eval.batch_size", "eval.merged", "train.mixed_precision")


def load_run(
    run_dir: str | Path, *, registry: Any = None, splits: tuple[str, ...] = (), overrides: list[str] | None = None
) -> tuple[Setup, Any]:
    """Rebuild a finished run's model: ``(setup, model)`` in eval mode.

    ``overrides`` (``key=value``) may change ``task.params.*`` (e.g. where the data is now),
    ``eval.batch_size``, ``eval.merged`` and ``train.mixed_precision``.

    Example:
        >>> setup, model = load_run("runs/afqmc-lora")          # doctest: +SKIP
    """
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import load_recipe

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file() or not (run_dir / "model").is_dir():
        raise PeftkitError(f"{run_dir} is not a finished peftkit run (needs recipe.yaml and model/)")
    bad = [o for o in overrides or [] if not o.split("=", 1)[0].strip().startswith(PREDICT_OVERRIDABLE)]
    if bad:
        raise PeftkitError(
            f"{', '.join(bad)}: a finished run can only change {', '.join(k + ('*' if k.endswith('.') else '') for k in PREDICT_OVERRIDABLE)}; "
            "the rest must stay as the model was trained (train a new run to change it)"
        )
    reg = registry or get_registry()
    recipe = load_recipe(run_dir / "recipe.yaml", [f"output_dir={run_dir}", *(overrides or [])], registry=reg)
    s = prepare(recipe, reg, splits=splits)  # data problems surface here, before the model is loaded
    missing = [sp for sp in splits if sp not in s.task.splits]
    if missing:
        raise PeftkitError(
            f"task {s.task.name!r} has no {' or '.join(missing)} split (it has {', '.join(s.task.splits)})"
        )
    model, _ = build_model(s, trained=run_dir / "model")
    model.eval()
    return s, model


def inference_device() -> Any:
    """The first CUDA device when there is one, else the CPU (what `peftkit predict` runs on)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def predict_run(run_dir: str | Path, *, registry: Any = None, overrides: list[str] | None = None) -> Path:
    """``peftkit predict RUN_DIR [key=value ...]``: the test-split submission file of a finished run."""
    t0 = time.perf_counter()
    s, model = load_run(run_dir, registry=registry, overrides=overrides, splits=("test",))
    model, merged = _merged_for_inference(s, model)
    device = inference_device()
    model.to(device)
    mp = mixed_precision(s.recipe)
    log.info(
        "predicting %s test split on %s (%s, %s)",
        s.task.name,
        device,
        "method merged into the base" if merged else "unmerged",
        "float32" if mp == "no" else f"{mp} autocast",
    )
    path, _ = write_test_predictions(s, model, Path(run_dir), device)
    log.info("done in %.1f s", time.perf_counter() - t0)
    return path


def zero_shot(recipe: Any, *, registry: Any = None) -> dict[str, Any]:
    """The dev metrics of a recipe's base model as loaded for its task's objective, untrained and without the
    method: the baseline a run is compared against (``peftkit zeroshot``). Returns ``{"zero_shot": metrics,
    "seconds", "samples"}``."""
    import torch

    from peftkit.build.model import load_model
    from peftkit.plugin.registry import get_registry

    s = prepare(recipe, registry or get_registry(), splits=("dev",))
    if "dev" not in s.data:
        raise PeftkitError(f"task {s.task.name!r} has no dev split to evaluate")
    torch.manual_seed(recipe.train.seed)
    model, _ = load_model(s.model_path, recipe.model, s.labels, s.tokenizer, head=s.objective)
    device = inference_device()
    model.to(device)
    t0 = time.perf_counter()
    metrics, _ = evaluate(
        model, s.data["dev"], s.task, eval_batch_size(recipe), s.pad_id, device, mixed_precision(recipe)
    )
    return {"zero_shot": metrics, "seconds": round(time.perf_counter() - t0, 3), "samples": len(s.data["dev"])}
