"""TensorBoard logging as a lifecycle plugin: loss and learning rate per logged step, every evaluation.

Events go to ``output_dir/tensorboard``; view with ``tensorboard --logdir runs``. Disable with
``PEFTKIT_DISABLE_PLUGINS=tensorboard``.
"""

from __future__ import annotations

from typing import Any

from peftkit import hookimpl

_writers: dict[int, Any] = {}


@hookimpl
def peftkit_on_train_begin(state):
    if not state.is_main_process:
        return
    from torch.utils.tensorboard import SummaryWriter

    _writers[id(state)] = SummaryWriter(log_dir=str(state.output_dir / "tensorboard"))
    params = state.summary.get("params") or {}
    if params:
        _writers[id(state)].add_text(
            "run/params", f"trainable {params['trainable']:,} of {params['total']:,} ({params['percent']}%)"
        )


@hookimpl
def peftkit_on_step_end(state):
    w = _writers.get(id(state))
    if w is not None and state.step % state.recipe.train.log_every == 0:
        w.add_scalar("train/loss", state.loss, state.step)
        w.add_scalar("train/lr", state.lr, state.step)


@hookimpl
def peftkit_on_eval(state, metrics):
    w = _writers.get(id(state))
    if w is not None:
        for key, value in metrics.items():
            w.add_scalar(f"eval/{key}", value, state.step)
        w.flush()


@hookimpl
def peftkit_on_train_end(state):
    w = _writers.pop(id(state), None)
    if w is not None:
        w.close()
