"""Requests to stop a run from outside: SIGTERM, Ctrl-C (SIGINT), and a parent process that went away.

Inside the training loop a signal only sets a flag; the loop sees it at the next step boundary, writes a
checkpoint and raises :class:`RunInterrupted`, so ``--resume`` goes on from exactly there. Outside the loop
(loading the model, the final evaluation) the signal raises at once: there is no step to finish. Either way the
run's ``finally`` blocks run, so the run lock is released. A second Ctrl-C while the loop is finishing its
step stops at once. The command line exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM).

The parent watch: a process that starts runs as its children (``peftkit compare`` does; any launcher may) puts
its pid into ``PEFTKIT_PARENT_PID`` (:data:`peftkit.run_dir.PARENT_ENV`); the run stops at its next step once
that process is no longer its parent, instead of training on as an orphan nobody watches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from peftkit.errors import TrainingError
from peftkit.run_dir import PARENT_ENV

log = logging.getLogger("peftkit")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on a signal. A KeyboardInterrupt, so code that already handles Ctrl-C handles it.

    Attributes:
        signum: the signal that stopped the run.
        exit_code: what the command line exits with (128 + signum: 130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def watched_parent() -> int:
    """The pid in ``PEFTKIT_PARENT_PID`` while it is this process's parent, else 0 (nothing to watch)."""
    raw = os.environ.get(PARENT_ENV, "").strip()
    pid = int(raw) if raw.isdigit() else 0
    return pid if pid and pid == os.getppid() else 0


class StopRequests:
    """Collects stop requests; the training loop asks :meth:`check` at every step boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = False  # True while the loop can stop cleanly at a step boundary
        self.parent = watched_parent()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.deferring or self.signum is not None:  # outside the loop, or asked twice: stop now
            raise RunInterrupted(signum)
        self.signum = signum
        log.warning("%s received: stopping after this step, with a checkpoint (%s again stops at once)", name, name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handle SIGTERM and SIGINT while the block runs (only in the main thread, where Python runs handlers);
        the previous handlers come back afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """While the block runs, a signal waits for the next :meth:`check` instead of raising."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def requested(self) -> bool:
        """Whether a signal asked the run to stop (checked at a step boundary)."""
        return self.signum is not None

    def check_parent(self, step: int) -> None:
        """Raise TrainingError when the watched parent process is gone (this process was re-parented)."""
        if self.parent and os.getppid() != self.parent:
            raise TrainingError(
                f"the process that started this run (pid {self.parent}, from {PARENT_ENV}) is gone; stopping at "
                f"step {step}. Start the run again from there (e.g. rerun the compare)"
            )

    def interrupted(self, step: int, checkpoint: str) -> RunInterrupted:
        """The exception that ends the run after a signal, logged (train.log too) with where it stopped."""
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        msg = f"stopped by {name} at step {step}; {checkpoint}; continue with --resume"
        log.warning(msg)
        return RunInterrupted(self.signum, msg)
