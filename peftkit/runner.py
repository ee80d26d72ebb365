"""The Accelerate training loop. Knows no method and no task by name: it calls their objects and fires hooks."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from peftkit import outputs
from peftkit.components import Setup, build_model, prepare
from peftkit.data import length_grouped_batches, shuffled_batches, steps_per_epoch
from peftkit.errors import PeftkitError, TrainingError
from peftkit.evaluation import evaluate
from peftkit.methods import count_parameters
from peftkit.recipe import Recipe, resolved_dict
from peftkit.resources import MemoryMeter
from peftkit.state import RunState

log = logging.getLogger("peftkit")


def _accelerator(recipe: Recipe) -> Any:
    import torch
    from accelerate import Accelerator

    mp = recipe.train.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if recipe.model.quantization is not None and mp == "fp16":
        mp = "no"  # bitsandbytes layers already compute in bnb_4bit_compute_dtype
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available())


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse to write over an earlier run unless asked to (nothing is lost by accident)."""
    found = [n for n in outputs.RUN_FILES if (path / n).exists()]
    if found and not overwrite:
        raise PeftkitError(
            f"output_dir {path} already holds a run ({', '.join(found)}). Choose another output_dir "
            f"(e.g. `output_dir={path}-2`), or pass --overwrite to replace it"
        )


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


def run(recipe: Recipe, *, registry: Any = None, overwrite: bool = False) -> dict[str, Any]:
    """Train, keep the best checkpoint, evaluate it from disk, and write output_dir. Returns metrics.json's content."""
    from accelerate.utils import set_seed

    from peftkit.plugins import get_registry

    reg = registry or get_registry()
    out = Path(recipe.output_dir)
    acc = _accelerator(recipe)
    if acc.is_main_process:
        check_output_dir(out, overwrite)
    outputs.setup_logging(out, acc.is_main_process)
    meter = MemoryMeter()
    s = prepare(recipe, reg)
    if "train" not in s.data:
        raise PeftkitError(f"task {recipe.task.name!r} has no train split; nothing to fine-tune")
    per_epoch, total = plan_steps(recipe, len(s.data["train"]), acc.num_processes)
    set_seed(recipe.train.seed)  # before any weight (e.g. the classifier) is created
    model, ctx = build_model(s, total)
    params = count_parameters(model)
    log.info("method %s: %s of %s parameters trainable (%.4f%%)", s.method.name, f"{params['trainable']:,}", f"{params['total']:,}", params["percent"])
    reg.hook.peftkit_model_ready(model=model, method=s.method, recipe=recipe)
    lr = recipe.train.lr or s.method.default_lr
    opt = _optimizer(model, recipe, lr)
    sched = _scheduler(opt, recipe, total)
    model, opt = acc.prepare(model, opt)
    state = RunState(recipe=recipe, method=s.method, task=s.task, model=acc.unwrap_model(model), optimizer=opt,
                     accelerator=acc, output_dir=out, total_steps=total)
    state.summary.update(params=params, lr=lr, steps_per_epoch=per_epoch, total_steps=total, processes=acc.num_processes)
    if acc.is_main_process:
        outputs.write_recipe(out / "recipe.yaml", resolved_dict(recipe, reg))
    train_seconds, samples = _train(s, state, model, opt, sched, acc)
    acc.wait_for_everyone()
    return _finish(s, state, acc, meter, train_seconds, samples)


def _train(s: Setup, state: RunState, model: Any, opt: Any, sched: Any, acc: Any) -> tuple[float, int]:
    from tqdm.auto import tqdm

    r = state.recipe
    t = r.train
    train = s.data["train"]
    world, rank = acc.num_processes, acc.process_index
    bar = tqdm(total=state.total_steps, desc="train", disable=not acc.is_main_process, dynamic_ncols=True)
    s.registry.hook.peftkit_on_train_begin(state=state)
    model.train()
    t0, samples, epoch = time.perf_counter(), 0, 0
    while state.step < state.total_steps and not state.should_stop:
        gb = t.batch_size * world
        batches = (length_grouped_batches(train.lengths, gb, t.seed, epoch) if r.data.group_by_length
                   else shuffled_batches(len(train), gb, t.seed, epoch))
        state.epoch = epoch
        samples += _epoch(s, state, model, opt, sched, acc, batches, rank, bar)
        epoch += 1
        if r.eval.every == "epoch" and "dev" in s.data:
            _evaluate_and_keep_best(s, state, acc)
    bar.close()
    elapsed = time.perf_counter() - t0
    if r.eval.every != "epoch" and "dev" in s.data and (not state.history or state.history[-1]["step"] != state.step):
        _evaluate_and_keep_best(s, state, acc)
    if "dev" not in s.data:
        _save_model(s, state, acc)
    return elapsed, samples


def _epoch(s: Setup, state: RunState, model: Any, opt: Any, sched: Any, acc: Any, batches: list, rank: int, bar: Any) -> int:
    import torch

    from peftkit.data import collate

    r, t = state.recipe, state.recipe.train
    train = s.data["train"]
    samples, micro, losses = 0, 0, []
    n_batches = len(batches)
    for k, gbatch in enumerate(batches):
        idx = gbatch[rank * t.batch_size:(rank + 1) * t.batch_size] or gbatch[:1]
        batch = {key: v.to(acc.device) for key, v in collate(train, idx, s.pad_id).items()}
        micro += 1
        boundary = micro == t.grad_accum or k == n_batches - 1
        ctx = acc.no_sync(model) if (not boundary and acc.num_processes > 1) else _null()
        with ctx, acc.autocast():
            loss = model(**batch).loss
            acc.backward(loss / micro_count(t.grad_accum, k, n_batches))
        losses.append(loss.detach().float())
        samples += len(idx) * acc.num_processes
        if not boundary:
            continue
        if t.max_grad_norm:
            acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        opt.step()
        sched.step()
        state.step += 1
        state.loss = float(torch.stack(losses).mean())
        state.lr = sched.get_last_lr()[0]
        if not math.isfinite(state.loss):
            raise TrainingError(
                f"training loss became {state.loss} at step {state.step}; lower train.lr (now {state.lr:.2e}) or "
                "set train.max_grad_norm; the best checkpoint so far is kept in output_dir/model"
            )
        s.registry.hook.peftkit_on_step_end(state=state)
        opt.zero_grad(set_to_none=True)
        micro, losses = 0, []
        bar.update(1)
        bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{state.lr:.2e}")
        if state.step % t.log_every == 0:
            log.info("step %d/%d epoch %d loss %.4f lr %.3e", state.step, state.total_steps, state.epoch, state.loss, state.lr)
        if isinstance(r.eval.every, int) and state.step % r.eval.every == 0 and "dev" in s.data:
            _evaluate_and_keep_best(s, state, acc)
        if state.step >= state.total_steps or state.should_stop:
            break
    return samples


def micro_count(grad_accum: int, k: int, n_batches: int) -> int:
    """Micro-batches in the accumulation window holding batch k (the last window may be shorter)."""
    last_window_start = (n_batches // grad_accum) * grad_accum
    if k >= last_window_start and n_batches % grad_accum:
        return n_batches % grad_accum
    return grad_accum


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def _selection_metric(state: RunState) -> str:
    return state.recipe.eval.metric or state.task.metric


def _evaluate_and_keep_best(s: Setup, state: RunState, acc: Any) -> dict[str, float]:
    r = state.recipe
    bs = r.eval.batch_size or 2 * r.train.batch_size
    metrics, _ = evaluate(state.model, s.data["dev"], s.task, bs, s.pad_id, acc.device)
    key = _selection_metric(state)
    if key not in metrics:
        raise PeftkitError(f"eval.metric: {key!r} is not among the task's metrics ({', '.join(sorted(metrics))})")
    entry = {"step": state.step, "epoch": state.epoch, **metrics}
    state.history.append(entry)
    log.info("eval step %d: %s", state.step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if state.best is None or metrics[key] > state.best[key]:
        state.best = entry
        _save_model(s, state, acc)
    s.registry.hook.peftkit_on_eval(state=state, metrics=metrics)
    return metrics


def _save_model(s: Setup, state: RunState, acc: Any) -> None:
    if not acc.is_main_process:
        return
    final = state.output_dir / "model"
    tmp = state.output_dir / ".model.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    s.method.save(acc.unwrap_model(state.model), tmp)
    s.tokenizer.save_pretrained(str(tmp))
    outputs.replace_dir(tmp, final)
    s.registry.hook.peftkit_on_save(state=state, path=final)


def _finish(s: Setup, state: RunState, acc: Any, meter: Any, seconds: float, samples: int) -> dict[str, Any]:
    """Reload the saved model from disk, evaluate it, predict if asked, write metrics.json."""
    from peftkit.inference import final_evaluation

    summary = state.summary
    summary.update(
        train={"seconds": round(seconds, 3), "samples": samples, "samples_per_second": round(samples / max(seconds, 1e-9), 3),
               "steps": state.step, "epochs": state.epoch + 1},
        history=state.history, best=state.best, method=state.method.name, task=state.task.name,
        method_facts=state.method.facts(acc.unwrap_model(state.model)),
    )
    summary["memory"] = meter.report(acc.unwrap_model(state.model))
    if acc.is_main_process:
        summary.update(final_evaluation(s, state, acc.device))
    s.registry.hook.peftkit_on_train_end(state=state)
    if acc.is_main_process:
        outputs.write_json(state.output_dir / "metrics.json", summary)
        log.info("done: %s", ", ".join(f"{k}={v:.4f}" for k, v in (summary.get("final") or {}).items()))
    return summary
