"""The Accelerate training loop. Knows no method and no task by name: it calls their objects and fires hooks."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from peftkit import run_dir as outputs
from peftkit.build.batches import collate, length_grouped_batches, shuffled_batches, steps_per_epoch
from peftkit.build.model import warn_if_bf16_emulated
from peftkit.build.setup import Setup, build_model, prepare
from peftkit.errors import PeftkitError, TrainingError
from peftkit.evaluation.evaluate import eval_batch_size, evaluate, mixed_precision
from peftkit.kit.peft_method import count_parameters
from peftkit.plugin.state import RunState
from peftkit.recipe import Recipe, resolved_dict, selection_metric
from peftkit.train import checkpoint
from peftkit.train.memory import MemoryMeter

log = logging.getLogger("peftkit")
OWNED = ("metrics.json", "recipe.yaml", "model", "checkpoints", "tensorboard", "train.log")


def _accelerator(recipe: Recipe) -> Any:
    import torch
    from accelerate import Accelerator

    mp = mixed_precision(recipe)
    if mp == "bf16":
        warn_if_bf16_emulated("train.mixed_precision=bf16", "train.mixed_precision: no")
    # One process may run several recipes (the Python API, tests): Accelerate keeps mixed precision in a
    # process-wide singleton that refuses a second value, so start each run from a fresh one. The process
    # group (PartialState) is kept.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    kwargs: dict[str, Any] = {}
    if recipe.train.compile:
        from accelerate.utils import TorchDynamoPlugin

        # Regional compilation: the repeated blocks share one compiled graph, so compiling takes about as long
        # as for one block (measured on e5-small: 54 s against 6 min for the whole model on 2 CPU cores).
        kwargs["dynamo_plugin"] = TorchDynamoPlugin(backend="inductor", dynamic=True, use_regional_compilation=True)
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available(), **kwargs)


def check_output_dir(path: Path, resolved: dict[str, Any], *, overwrite: bool, resume: bool) -> None:
    """Refuse to write over an earlier run unless asked to; nothing is lost by accident."""
    import yaml

    found = [n for n in outputs.RUN_FILES + ("checkpoints",) if (path / n).exists()]
    if resume:
        if not checkpoint.latest(path):
            raise PeftkitError(f"--resume: {path} holds no complete checkpoint to resume from; run without --resume")
        old = yaml.safe_load((path / "recipe.yaml").read_text()) if (path / "recipe.yaml").is_file() else {}
        if checkpoint.recipe_hash(old) != checkpoint.recipe_hash(resolved):
            raise PeftkitError(
                f"--resume: the recipe differs from the one that started {path} (see {path / 'recipe.yaml'})"
            )
        return
    if found and not overwrite:
        same = (path / "recipe.yaml").is_file() and checkpoint.recipe_hash(
            yaml.safe_load((path / "recipe.yaml").read_text())
        ) == checkpoint.recipe_hash(resolved)
        hint = "pass --resume to continue it, " if same and checkpoint.latest(path) else ""
        raise PeftkitError(
            f"output_dir {path} already holds a run ({', '.join(found)}); {hint}choose another output_dir "
            f"(e.g. output_dir={path}-2), or pass --overwrite to replace it"
        )
    if found and overwrite:
        for name in OWNED:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def _optimizer(model: Any, recipe: Recipe, lr: float) -> Any:
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    t = recipe.train
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=t.adam_betas, eps=t.adam_eps)


def _scheduler(opt: Any, recipe: Recipe, total: int) -> Any:
    from transformers import get_scheduler

    w = recipe.train.warmup
    warmup = int(round(w * total)) if w < 1 else int(w)
    name = {"constant": "constant_with_warmup"}.get(recipe.train.scheduler, recipe.train.scheduler)
    return get_scheduler(name, opt, num_warmup_steps=min(warmup, total), num_training_steps=total)


def plan_steps(recipe: Recipe, n_train: int, processes: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for this recipe and dataset size."""
    t = recipe.train
    per_epoch = steps_per_epoch(n_train, t.batch_size, t.grad_accum, processes)
    total = t.max_steps or max(1, math.ceil(per_epoch * t.epochs))
    return per_epoch, total


def run(recipe: Recipe, *, registry: Any = None, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train, keep the best checkpoint, evaluate it from disk, and write output_dir. Returns metrics.json's content."""
    from peftkit.plugin.registry import get_registry

    reg = registry or get_registry()
    out = Path(recipe.output_dir)
    resolved = resolved_dict(recipe, reg)
    acc = _accelerator(recipe)
    with outputs.run_lock(out, acc.is_main_process):
        try:
            return _run(recipe, reg, out, resolved, acc, overwrite=overwrite, resume=resume)
        except PeftkitError as exc:  # why the run ended belongs in its train.log too (the CLI prints it once)
            log.error("run stopped: %s", exc, extra={"file_only": True})
            raise


def _run(
    recipe: Recipe, reg: Any, out: Path, resolved: dict[str, Any], acc: Any, *, overwrite: bool, resume: bool
) -> dict[str, Any]:
    from accelerate.utils import set_seed

    if acc.is_main_process:
        check_output_dir(out, resolved, overwrite=overwrite, resume=resume)
    acc.wait_for_everyone()
    outputs.setup_logging(out, acc.is_main_process)
    if acc.is_main_process:
        for line in reg.problems():
            log.warning(line)
    meter = MemoryMeter()
    s = prepare(recipe, reg)
    if "train" not in s.data:
        raise PeftkitError(f"task {recipe.task.name!r} has no train split; nothing to fine-tune")
    per_epoch, total = plan_steps(recipe, len(s.data["train"]), acc.num_processes)
    set_seed(recipe.train.seed)  # before any weight (e.g. the classifier) is created
    model, _ = build_model(s, total)
    params = count_parameters(model)
    log.info(
        "method %s: %s of %s parameters trainable (%.4f%%)",
        s.method.name,
        f"{params['trainable']:,}",
        f"{params['total']:,}",
        params["percent"],
    )
    s.hooks.peftkit_model_ready(model=model, method=s.method, recipe=recipe)
    lr = recipe.train.lr or s.method.default_lr
    opt = _optimizer(model, recipe, lr)
    sched = _scheduler(opt, recipe, total)
    model, opt = acc.prepare(model, opt)
    state = RunState(
        recipe=recipe,
        method=s.method,
        task=s.task,
        model=acc.unwrap_model(model, keep_torch_compile=False),
        optimizer=opt,
        accelerator=acc,
        output_dir=out,
        total_steps=total,
    )
    state.summary.update(
        params=params, lr=lr, steps_per_epoch=per_epoch, total_steps=total, processes=acc.num_processes
    )
    state.recipe_hash = checkpoint.recipe_hash(resolved)
    if resume:
        _resume(s, state, opt, sched)
    elif acc.is_main_process:
        outputs.write_recipe(out / "recipe.yaml", resolved)
    seconds = _train(s, state, model, opt, sched, acc)
    acc.wait_for_everyone()
    return _finish(s, state, acc, meter, seconds)


def _resume(s: Setup, state: RunState, opt: Any, sched: Any) -> None:
    meta, extra = checkpoint.restore(checkpoint.latest(state.output_dir), state.model, opt, sched, state.recipe_hash)
    for key in ("step", "epoch", "batch_index", "samples", "history", "best", "losses"):
        setattr(state, key, meta[key])
    s.hooks.peftkit_on_load_checkpoint(state=state, extra=extra)


def _train(s: Setup, state: RunState, model: Any, opt: Any, sched: Any, acc: Any) -> float:
    from tqdm.auto import tqdm

    r, t = state.recipe, state.recipe.train
    train = s.data["train"]
    bar = tqdm(
        total=state.total_steps,
        initial=state.step,
        desc="train",
        disable=not acc.is_main_process or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )  # no bar in a log file: the INFO step lines say the same
    s.hooks.peftkit_on_train_begin(state=state)
    model.train()
    t0 = time.perf_counter()
    while state.step < state.total_steps and not state.should_stop:
        gb = t.batch_size * acc.num_processes
        batches = (
            length_grouped_batches(train.lengths, gb, t.seed, state.epoch)
            if r.data.group_by_length
            else shuffled_batches(len(train), gb, t.seed, state.epoch)
        )
        _epoch(s, state, model, opt, sched, acc, batches, bar)
        if state.batch_index < len(batches):  # stopped inside the epoch (max_steps or a hook)
            break
        if r.eval.every == "epoch" and "dev" in s.data:
            _evaluate_and_keep_best(s, state, acc)
        state.epoch, state.batch_index = state.epoch + 1, 0
        _checkpoint(s, state, opt, sched, acc)
    bar.close()
    elapsed = time.perf_counter() - t0 - state.paused_seconds
    if "dev" in s.data and (not state.history or state.history[-1]["step"] != state.step):
        _evaluate_and_keep_best(s, state, acc)
    if "dev" not in s.data:
        _save_model(s, state, acc)
    return elapsed


def _epoch(s: Setup, state: RunState, model: Any, opt: Any, sched: Any, acc: Any, batches: list, bar: Any) -> None:
    """Train from ``state.batch_index`` to the end of the epoch (or total_steps); one optimizer step per window."""
    t = state.recipe.train
    n = len(batches)
    while state.batch_index < n and state.step < state.total_steps and not state.should_stop:
        window = range(state.batch_index, min(state.batch_index + t.grad_accum, n))
        losses = [_micro_step(s, state, model, acc, batches[k], k == window[-1], len(window)) for k in window]
        state.batch_index = window[-1] + 1
        _optimizer_step(s, state, model, opt, sched, acc, _mean_over_processes(acc, sum(losses) / len(losses)))
        bar.update(1)
        bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{state.lr:.2e}")
        every = state.recipe.eval.every
        if isinstance(every, int) and state.step % every == 0 and "dev" in s.data:
            _evaluate_and_keep_best(s, state, acc)
        if t.checkpoint_every and state.step % t.checkpoint_every == 0:
            _checkpoint(s, state, opt, sched, acc)


def _epochs_done(state: RunState) -> float:
    """Training progress in epochs, as the HF Trainer reports it: 1.0 after the first full pass."""
    return round(state.step / max(state.summary["steps_per_epoch"], 1), 4)


def _mean_over_processes(acc: Any, value: float) -> float:
    """The step's loss as the mean over processes (what a single process with the global batch would see)."""
    if acc.num_processes == 1:
        return value
    import torch

    return float(acc.gather(torch.tensor([value], device=acc.device)).mean())


def _micro_step(s: Setup, state: RunState, model: Any, acc: Any, gbatch: list[int], last: bool, window: int) -> float:
    bs, rank = state.recipe.train.batch_size, acc.process_index
    idx = gbatch[rank * bs : (rank + 1) * bs] or gbatch[:1]
    batch = {
        k: v.to(acc.device)
        for k, v in collate(s.data["train"], idx, s.pad_id, epoch=state.epoch, batch=state.batch_index).items()
    }
    sync = acc.no_sync(model) if (not last and acc.num_processes > 1) else _Null()
    with sync, acc.autocast():
        loss = model(**batch).loss
        acc.backward(loss / window)
    state.samples += len(gbatch)
    return float(loss.detach())


def _started_by() -> int:
    """The pid of the `peftkit compare` that started this process (outputs.PARENT_ENV), while it is our parent; else 0."""
    pid = int(os.environ.get(outputs.PARENT_ENV, "0") or 0)
    return pid if pid and pid == os.getppid() else 0


_PARENT = _started_by()


def _optimizer_step(s: Setup, state: RunState, model: Any, opt: Any, sched: Any, acc: Any, loss: float) -> None:
    t = state.recipe.train
    if _PARENT and os.getppid() != _PARENT:  # the compare was killed: an orphan would train on, unseen
        raise TrainingError(
            f"the peftkit compare (pid {_PARENT}) that started this run is gone; stopping at step "
            f"{state.step}. Rerun the compare to train this cell again"
        )
    if not math.isfinite(loss):
        raise TrainingError(
            f"training loss became {loss} at step {state.step + 1}; lower train.lr (now {sched.get_last_lr()[0]:.2e}), "
            "keep train.max_grad_norm set, or use float32; the best model so far is in output_dir/model and the "
            "last good checkpoint in output_dir/checkpoints"
        )
    if t.max_grad_norm:
        acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
    opt.step()
    sched.step()
    state.step += 1
    state.loss, state.lr = loss, sched.get_last_lr()[0]
    state.losses.append(round(loss, 6))
    s.hooks.peftkit_on_step_end(state=state)
    opt.zero_grad(set_to_none=True)
    if state.step % t.log_every == 0:
        recent = state.losses[-t.log_every :]
        log.info(
            "step %d/%d epoch %.2f loss %.4f lr %.3e",
            state.step,
            state.total_steps,
            _epochs_done(state),
            sum(recent) / len(recent),
            state.lr,
        )


def micro_count(grad_accum: int, k: int, n_batches: int) -> int:
    """Micro-batches in the accumulation window holding batch k (the last window may be shorter)."""
    start = (k // grad_accum) * grad_accum
    return min(start + grad_accum, n_batches) - start


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


@contextlib.contextmanager
def _pause(state: RunState) -> Any:
    """Count the block's wall time as a pause of training (not in train.seconds / samples_per_second)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        state.paused_seconds += time.perf_counter() - t0


def _checkpoint(s: Setup, state: RunState, opt: Any, sched: Any, acc: Any) -> None:
    if not acc.is_main_process:
        return
    meta = {k: getattr(state, k) for k in ("step", "epoch", "batch_index", "samples", "history", "best", "losses")}
    meta["recipe_hash"] = state.recipe_hash
    extra: dict[str, Any] = {}
    s.hooks.peftkit_on_save_checkpoint(state=state, extra=extra)
    with _pause(state):
        checkpoint.save(state.output_dir, state.model, opt, sched, meta, state.recipe.train.keep_checkpoints, extra)


def _selection_metric(state: RunState) -> str:
    return selection_metric(state.recipe, state.task)


def _evaluate_and_keep_best(s: Setup, state: RunState, acc: Any) -> dict[str, float]:
    with _pause(state):
        return _evaluate_and_keep_best_timed(s, state, acc)


def _evaluate_and_keep_best_timed(s: Setup, state: RunState, acc: Any) -> dict[str, float]:
    r = state.recipe
    bs = eval_batch_size(r)
    metrics, _ = evaluate(state.model, s.data["dev"], s.task, bs, s.pad_id, acc.device, acc.mixed_precision)
    key = _selection_metric(state)
    if key not in metrics:
        where = "eval.metric" if r.eval.metric else f"task {s.task.name!r} (its Task.metric)"
        raise PeftkitError(
            f"{where}: {key!r} is not among the metrics the task's compute_metrics returned "
            f"({', '.join(sorted(metrics))})"
        )
    entry = {"step": state.step, "epoch": _epochs_done(state), **metrics}
    state.history.append(entry)
    log.info("eval step %d: %s", state.step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    for k, v in metrics.items():
        if not math.isfinite(v):
            log.warning(
                "eval step %d: %s is %s (training diverged, or the task's compute_metrics returned no number); "
                "metrics.json records it as null, and it is never the best",
                state.step,
                k,
                v,
            )
    s.hooks.peftkit_on_eval(state=state, metrics=metrics)
    if _better(metrics[key], None if state.best is None else state.best[key]):  # a tie keeps the earlier model
        state.best = entry
        _save_model(s, state, acc)
        log.info("new best %s=%.4f at step %d: saved to %s", key, metrics[key], state.step, state.output_dir / "model")
    return metrics


def _better(new: float, best: float | None) -> bool:
    """Whether ``new`` beats the best so far; a NaN never does, and anything beats a NaN (a first model is
    always kept, so output_dir/model exists)."""
    if best is None or math.isnan(best):
        return True
    return not math.isnan(new) and new > best


def _save_model(s: Setup, state: RunState, acc: Any) -> None:
    if not acc.is_main_process:
        return
    final = state.output_dir / "model"
    tmp = state.output_dir / ".model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    s.method.save(acc.unwrap_model(state.model), tmp)
    s.tokenizer.save_pretrained(str(tmp))
    outputs.replace_dir(tmp, final)
    s.hooks.peftkit_on_save(state=state, path=final)


def _loss_moved(losses: list[float]) -> bool:
    """False when the training loss is flat: first and last tenth of the steps agree within 1%."""
    if len(losses) < 20:
        return True
    k = max(2, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return abs(first - last) > 0.01 * max(abs(first), 1e-8)


def _finish(s: Setup, state: RunState, acc: Any, meter: Any, seconds: float) -> dict[str, Any]:
    """Reload the saved model from disk, evaluate it, predict if asked, write metrics.json."""
    from peftkit.evaluation.runs import final_evaluation

    summary = state.summary
    summary.update(
        train={
            "seconds": round(seconds, 3),
            "paused_seconds": round(state.paused_seconds, 3),
            "samples": state.samples,
            "samples_per_second": round(state.samples / max(seconds, 1e-9), 3),
            "steps": state.step,
            "epochs": round(state.step / max(summary["steps_per_epoch"], 1), 4),
            "loss": state.losses,
        },
        history=state.history,
        best=state.best,
        method=state.method.name,
        task=state.task.name,
        method_facts=state.method.facts(acc.unwrap_model(state.model)),
    )
    if summary["method_facts"]:
        log.info("method %s facts: %s", state.method.name, json.dumps(summary["method_facts"], default=str))
    if state.best is not None:
        key = _selection_metric(state)
        log.info(
            "output_dir/model holds the best evaluation: step %d of %d (epoch %.2f), %s=%.4f",
            state.best["step"],
            state.step,
            state.best["epoch"],
            key,
            state.best[key],
        )
    if not _loss_moved(state.losses):
        msg = (
            f"training loss did not move ({state.losses[0]:.4f} → {state.losses[-1]:.4f}); check train.lr and the data"
        )
        log.warning(msg)
        summary["warnings"] = [msg]
    summary["memory"] = meter.report(acc.unwrap_model(state.model))
    if acc.is_main_process:
        final = final_evaluation(s, state, acc.device)
        summary.update({k: v for k, v in final.items() if k != "warnings"})
        if final.get("warnings"):
            summary["warnings"] = summary.get("warnings", []) + final["warnings"]
    s.hooks.peftkit_on_train_end(state=state)
    if acc.is_main_process:
        outputs.write_json(state.output_dir / "metrics.json", summary)
        log.info("done: %s", ", ".join(f"{k}={v:.4f}" for k, v in (summary.get("final") or {}).items()))
    return summary
