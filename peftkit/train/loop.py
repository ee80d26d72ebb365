"""The training loop, read top to bottom: :meth:`Trainer.setup` builds the run, :meth:`Trainer.fit` trains it,
:meth:`Trainer.finish` evaluates the saved model and writes ``metrics.json``; :func:`run` does all three.

Knows no method and no task by name: it calls their objects and fires hooks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from peftkit import run_dir
from peftkit.build.batches import collate, length_grouped_batches, shuffled_batches
from peftkit.build.setup import build_model, prepare
from peftkit.errors import PeftkitError, TrainingError
from peftkit.plugin.state import RunState
from peftkit.recipe import Recipe, resolved_dict
from peftkit.train import checkpoint
from peftkit.train.best import BestModel, paused
from peftkit.train.folder import check_output_dir
from peftkit.train.memory import MemoryMeter
from peftkit.train.method_hooks import method_hooks
from peftkit.train.parts import agree_over_processes, make_accelerator, make_optimizer, make_scheduler, plan_steps
from peftkit.train.stop import RunInterrupted, StopRequests
from peftkit.train.summary import add_final_evaluation, log_parameters, summarize

log = logging.getLogger("peftkit")


class Trainer:
    """One training run, holding what every part of it uses.

    Attributes:
        recipe: the validated recipe; ``registry``: the plugins; ``out``: its output_dir.
        acc: the ``accelerate.Accelerator``; ``stop``: stop requests (signals, a gone parent process).
        prepared: the recipe's plugins, tokenizer and tokenised data (:class:`peftkit.build.setup.Setup`).
        model, optimizer, scheduler: as Accelerate prepared them; ``state``: the :class:`RunState` hooks see.
        best: evaluation on dev and the best model in ``output_dir/model``.
        seconds: training time over every leg of the run (pauses excluded), known after :meth:`fit`.
    """

    def __init__(self, recipe: Recipe, *, registry: Any = None, overwrite: bool = False, resume: bool = False) -> None:
        from peftkit.plugin.registry import get_registry

        self.recipe, self.registry = recipe, registry or get_registry()
        self.overwrite, self.resume = overwrite, resume
        self.out = Path(recipe.output_dir)
        self.resolved = resolved_dict(recipe, self.registry)
        self.acc = make_accelerator(recipe)
        self.stop = StopRequests()
        self.logging = False  # whether train.log is attached (an error before that is the CLI's alone to print)
        self.stopping = False  # every process agreed at the last step that a signal asked to stop
        self.saved_step = -1  # step of the last checkpoint written
        self.fit_started = False

    def run(self) -> dict[str, Any]:
        """setup → fit → finish, holding the run folder's lock, the signal handlers and the method's hooks."""
        if self.resume and not self.out.is_dir():
            raise PeftkitError(
                f"--resume: {self.out} does not exist, so there is no run to resume; run without --resume"
            )
        method = self.registry.methods.get(self.recipe.method.name)
        with (
            run_dir.run_lock(self.out, self.acc.is_main_process),
            self.stop.installed(),
            method_hooks(self.registry.pm, method),
        ):
            try:
                self.setup()
                self.fit()
                return self.finish()
            except PeftkitError as exc:  # why the run ended belongs in its train.log too (the CLI prints it once)
                if self.logging:
                    log.error("run stopped: %s", exc, extra={"file_only": True})
                raise
            except RunInterrupted as exc:
                if self.logging and not self.stopping:  # raised outside the loop; the loop logs its own stop
                    log.warning(
                        "%s during %s; continue with --resume", exc, "training" if self.fit_started else "setup"
                    )
                raise

    # -- setup -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Check output_dir, start the log, build data, model, optimizer and scheduler; restore a checkpoint."""
        from accelerate.utils import set_seed

        recipe, acc = self.recipe, self.acc
        resume_from = None
        if acc.is_main_process:
            resume_from = check_output_dir(self.out, self.resolved, overwrite=self.overwrite, resume=self.resume)
        acc.wait_for_everyone()
        run_dir.setup_logging(self.out, acc.is_main_process)
        self.logging = True
        for line in self.registry.problems() if acc.is_main_process else []:
            log.warning(line)
        self.meter = MemoryMeter()
        self.prepared = s = prepare(recipe, self.registry)
        if "train" not in s.data:
            raise PeftkitError(f"task {recipe.task.name!r} has no train split; nothing to fine-tune")
        per_epoch, total = plan_steps(recipe, len(s.data["train"]), acc.num_processes)
        set_seed(recipe.train.seed)  # before any weight (e.g. the classifier) is created
        model, ctx = build_model(s, total)
        params = log_parameters(model, recipe.method.name)
        s.hooks.peftkit_model_ready(model=model, method=s.method, recipe=recipe)
        lr = recipe.train.lr or s.method.default_lr
        optimizer = make_optimizer(model, recipe, lr, ctx.head_modules)
        self.scheduler = make_scheduler(optimizer, recipe, total)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.state = RunState(
            recipe=recipe,
            method=s.method,
            task=s.task,
            model=acc.unwrap_model(self.model, keep_torch_compile=False),
            optimizer=self.optimizer,
            accelerator=acc,
            output_dir=self.out,
            steps_per_epoch=per_epoch,
            total_steps=total,
            recipe_hash=checkpoint.recipe_hash(self.resolved),
        )
        self.state.summary.update(
            params=params, lr=lr, steps_per_epoch=per_epoch, total_steps=total, processes=acc.num_processes
        )
        if recipe.train.head_lr is not None:
            self.state.summary["head_lr"] = recipe.train.head_lr
        self.best = BestModel(s, self.state, acc)
        if self.resume:
            self._restore(resume_from or checkpoint.latest(self.out))
        elif acc.is_main_process:
            run_dir.write_recipe(self.out / "recipe.yaml", self.resolved)

    def _restore(self, path: Path | None) -> None:
        if path is None:  # a non-main process of a folder whose checkpoints went away meanwhile
            raise PeftkitError(f"--resume: {self.out} holds no complete checkpoint to resume from")
        extra = checkpoint.resume_state(path, self.state, self.optimizer, self.scheduler)
        self.saved_step = self.state.step
        self.prepared.hooks.peftkit_on_load_checkpoint(state=self.state, extra=extra)

    # -- fit ---------------------------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train to ``total_steps``, or until a hook or a signal stops it; evaluate and checkpoint on the way."""
        from tqdm.auto import tqdm

        s, state, r = self.prepared, self.state, self.recipe
        self.fit_started = True
        self.bar = tqdm(
            total=state.total_steps,
            initial=state.step,
            desc="train",
            disable=not self.acc.is_main_process or not sys.stderr.isatty(),
            dynamic_ncols=True,
        )  # no bar in a log file: the INFO step lines say the same
        s.hooks.peftkit_on_train_begin(state=state)
        self.model.train()
        self._leg = (time.perf_counter(), state.paused_seconds)
        with self.stop.deferred():
            while state.step < state.total_steps and not state.should_stop:
                batches = self._epoch_batches()
                self._train_epoch(batches)
                if state.batch_index < len(batches):  # stopped inside the epoch (max_steps or a hook)
                    break
                if r.eval.every == "epoch" and "dev" in s.data:
                    self.best.evaluate()
                state.epoch, state.batch_index, state.epoch_progress = state.epoch + 1, 0, 0.0
                self._checkpoint()
        self.bar.close()
        self.seconds = self._train_seconds()
        if "dev" in s.data and (not state.history or state.history[-1]["step"] != state.step):
            self.best.evaluate()
        if "dev" not in s.data:
            self.best.save()

    def _train_seconds(self) -> float:
        """Training time so far: the earlier legs' (from the checkpoint) plus this leg's, pauses excluded."""
        start, paused_at_start = self._leg
        return self.state.train_seconds + time.perf_counter() - start - (self.state.paused_seconds - paused_at_start)

    def _epoch_batches(self) -> list[list[int]]:
        """The current epoch's global batches: a function of (train.seed, epoch) only, so a resume sees the same."""
        t, state, train = self.recipe.train, self.state, self.prepared.data["train"]
        gb = t.batch_size * self.acc.num_processes
        if self.recipe.data.group_by_length:
            batches = length_grouped_batches(train.lengths, gb, t.seed, state.epoch)
        else:
            batches = shuffled_batches(len(train), gb, t.seed, state.epoch)
        state.epoch_progress = state.batch_index / max(len(batches), 1)
        return batches

    def _train_epoch(self, batches: list[list[int]]) -> None:
        """Train from ``state.batch_index`` to the end of the epoch (or total_steps); one optimizer step per
        ``train.grad_accum`` batches (the epoch's last window may be shorter, and its loss is averaged over it)."""
        t, state, n = self.recipe.train, self.state, len(batches)
        while state.batch_index < n and state.step < state.total_steps and not state.should_stop:
            window = range(state.batch_index, min(state.batch_index + t.grad_accum, n))
            losses = [self._forward_backward(batches[k], k, k == window[-1], len(window)) for k in window]
            state.batch_index = window[-1] + 1
            state.epoch_progress = state.batch_index / n
            self._optimizer_step(sum(losses) / len(losses))
            self._after_step()

    def _forward_backward(self, gbatch: list[int], position: int, last: bool, window: int) -> float:
        """This process's share of one global batch (the epoch's ``position``-th): forward, and backward of the
        loss over the window's length. An objective that masks draws its masks from (epoch, position)."""
        acc, bs = self.acc, self.recipe.train.batch_size
        idx = gbatch[acc.process_index * bs : (acc.process_index + 1) * bs] or gbatch[:1]
        data, pad_id = self.prepared.data["train"], self.prepared.pad_id
        batch = {
            k: v.to(acc.device) for k, v in collate(data, idx, pad_id, epoch=self.state.epoch, batch=position).items()
        }
        # only the window's last micro-batch synchronises gradients across processes
        sync = acc.no_sync(self.model) if (not last and acc.num_processes > 1) else contextlib.nullcontext()
        with sync, acc.autocast():
            loss = self.model(**batch).loss
            acc.backward(loss / window)
        self.state.samples += len(gbatch)
        return float(loss.detach())

    def _optimizer_step(self, loss: float) -> None:
        state, t = self.state, self.recipe.train
        self.stop.check_parent(state.step)
        loss, self.stopping = agree_over_processes(self.acc, loss, self.stop.requested())
        if not math.isfinite(loss):
            raise TrainingError(
                f"training loss became {loss} at step {state.step + 1}; lower train.lr (now "
                f"{self.scheduler.get_last_lr()[0]:.2e}), keep train.max_grad_norm set, or use float32; the best model "
                "so far is in output_dir/model and the last good checkpoint in output_dir/checkpoints"
            )
        if t.max_grad_norm:
            self.acc.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        state.step += 1
        state.loss, state.lr = loss, self.scheduler.get_last_lr()[0]
        state.losses.append(round(loss, 6))
        self.prepared.hooks.peftkit_on_step_end(state=state)
        self.optimizer.zero_grad(set_to_none=True)
        if state.step % t.log_every == 0:
            recent = state.losses[-t.log_every :]
            log.info(
                "step %d/%d epoch %.2f loss %.4f lr %.3e",
                state.step,
                state.total_steps,
                state.epochs_done,
                sum(recent) / len(recent),
                state.lr,
            )

    def _after_step(self) -> None:
        """Progress bar, evaluation and checkpoint when due; then the stop a signal asked for, if any."""
        state, every = self.state, self.recipe.eval.every
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{state.lr:.2e}")
        if isinstance(every, int) and state.step % every == 0 and "dev" in self.prepared.data:
            self.best.evaluate()
        if self.recipe.train.checkpoint_every and state.step % self.recipe.train.checkpoint_every == 0:
            self._checkpoint()
        if self.stopping:
            if self.saved_step != state.step:
                self._checkpoint()
            self.acc.wait_for_everyone()
            where = self.out / "checkpoints" / f"{checkpoint.PREFIX}{state.step:08d}"
            raise self.stop.interrupted(state.step, f"checkpoint {where} written")

    def _checkpoint(self) -> None:
        state = self.state
        self.saved_step = state.step
        if not self.acc.is_main_process:
            return
        meta = checkpoint.meta_of(state, train_seconds=self._train_seconds())
        extra: dict[str, Any] = {}
        self.prepared.hooks.peftkit_on_save_checkpoint(state=state, extra=extra)
        with paused(state):
            checkpoint.save(
                self.out, state.model, self.optimizer, self.scheduler, meta, self.recipe.train.keep_checkpoints, extra
            )

    # -- finish ------------------------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Reload the saved model from disk, evaluate it, predict if asked, write metrics.json."""
        self.acc.wait_for_everyone()
        state = self.state
        summary = summarize(self.prepared, state, self.acc, self.meter, self.seconds, self.best.metric)
        self._release_training()
        if self.acc.is_main_process:
            add_final_evaluation(summary, self.prepared, state, self.acc.device)
        self.prepared.hooks.peftkit_on_train_end(state=state)
        if self.acc.is_main_process:
            run_dir.write_json(self.out / "metrics.json", summary)
            log.info("done: %s", ", ".join(f"{k}={v:.4f}" for k, v in (summary.get("final") or {}).items()))
        return summary

    def _release_training(self) -> None:
        """Training is over and the best model is on disk: drop the training model, the optimizer (Adam keeps two
        moments per trainable weight) and the scheduler before the final evaluation loads the saved model, so
        that a run never holds two models and an optimizer at once."""
        self.state.model = self.state.optimizer = None
        self.model = self.optimizer = self.scheduler = None
        self.acc.free_memory()  # Accelerate's own references to what it prepared; gc and the device cache


def run(recipe: Recipe, *, registry: Any = None, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train, keep the best checkpoint, evaluate it from disk, and write output_dir. Returns metrics.json's content.

    Raises:
        PeftkitError: bad input found while running (the message says what to do).
        RunInterrupted: SIGTERM or Ctrl-C; a checkpoint was written when it came during training.
    """
    return Trainer(recipe, registry=registry, overwrite=overwrite, resume=resume).run()
