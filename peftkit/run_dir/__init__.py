"""The run folder: its files, its one-writer lock and its log (``output_dir`` as a run leaves it)."""

from peftkit.run_dir.files import (
    RUN_FILES,
    RunResult,
    atomic_write,
    replace_dir,
    write_json,
    write_predictions,
    write_recipe,
)
from peftkit.run_dir.lock import LOCK, describe, holder, run_lock
from peftkit.run_dir.log import setup_logging

# Set in a child's environment by a process that starts runs (``peftkit compare`` does): the run stops at its
# next step once the process with this pid is no longer its parent, instead of training on as an orphan that
# nobody watches. Any launcher may set it; the runner only watches the pid (peftkit.train.stop).
PARENT_ENV = "PEFTKIT_PARENT_PID"

__all__ = [
    "LOCK",
    "PARENT_ENV",
    "RUN_FILES",
    "RunResult",
    "atomic_write",
    "describe",
    "holder",
    "replace_dir",
    "run_lock",
    "setup_logging",
    "write_json",
    "write_predictions",
    "write_recipe",
]
