"""RunState: the one object lifecycle hooks receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunState:
    """What a lifecycle hook may read (and, where documented, change).

    Attributes:
        recipe: the validated Recipe.
        method: the Method object in use.
        task: the Task object in use.
        model: the trainable model (unwrapped from Accelerate); None once training is over (``peftkit_on_train_end``
            sees the run's result in ``output_dir/model``).
        optimizer: the optimizer (None outside training).
        accelerator: the ``accelerate.Accelerator``.
        output_dir: where the run writes.
        step: optimizer steps done so far.
        epoch: the epoch being trained, counting from 0. In the evaluation at the end of an epoch
            (``eval.every: epoch``, and its ``peftkit_on_eval``/``peftkit_on_save`` hooks) it still names the
            epoch just finished, with ``epoch_progress == 1.0``; right after, it moves to the next epoch with
            ``epoch_progress == 0.0``, which is what the epoch-end checkpoint (``peftkit_on_save_checkpoint``)
            and a run that ends there see.
        epoch_progress: the fraction of the current epoch's batches trained so far (0.0 to 1.0), so that
            ``epoch + epoch_progress`` is always the number of epochs trained, 1.5 half-way through the second.
        steps_per_epoch: optimizer steps in one epoch (the last accumulation window of an epoch may be short).
        total_steps: optimizer steps the run will take.
        loss: mean training loss of the last optimizer step.
        lr: learning rate after the last optimizer step.
        history: every evaluation so far, as dicts with ``step`` and metrics.
        best: best evaluation so far (by the selection metric), or None.
        should_stop: set True in a hook to end training after this step.
        batch_index: index of the next (global) batch within the current epoch.
        samples: training examples processed so far (all processes).
        losses: mean training loss of every optimizer step so far.
        recipe_hash: hash of the resolved recipe (minus output_dir); checkpoints must match it.
        summary: facts that end up in metrics.json (plugins may add keys).
        paused_seconds: wall time spent inside the training loop on evaluation, saving and checkpoints
            (excluded from ``train.seconds`` so that samples/s measures training alone), over every leg of a
            resumed run.
        train_seconds: training time (pauses excluded) of the earlier legs of a resumed run, from the checkpoint
            it resumed from; 0.0 for a run that was not resumed.
    """

    recipe: Any
    method: Any
    task: Any
    model: Any = None
    optimizer: Any = None
    accelerator: Any = None
    output_dir: Path = Path(".")
    step: int = 0
    epoch: int = 0
    epoch_progress: float = 0.0
    steps_per_epoch: int = 0
    total_steps: int = 0
    loss: float | None = None
    lr: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    should_stop: bool = False
    batch_index: int = 0
    samples: int = 0
    losses: list[float] = field(default_factory=list)
    recipe_hash: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    paused_seconds: float = 0.0
    train_seconds: float = 0.0

    @property
    def epochs_done(self) -> float:
        """Training progress in optimizer steps over steps per epoch, as the HF Trainer reports it (1.0 after the
        first full pass); what the log lines, ``history`` entries and ``metrics.json`` ``train.epochs`` show."""
        return round(self.step / max(self.steps_per_epoch, 1), 4)

    @property
    def is_main_process(self) -> bool:
        """True on the process that writes outputs (rank 0)."""
        return self.accelerator is None or self.accelerator.is_main_process
