"""How a cell runs: in this process or as ``python -m peftkit run``, and spreading jobs over CUDA devices.

Cells run one after another on a CPU machine. With several CUDA devices (and the subprocess executor)
as many jobs run at once as there are devices, each cell in its own process pinned to one device with
``CUDA_VISIBLE_DEVICES``. Every cell carries its seed in its recipe and shares nothing with the others,
so running them in parallel cannot change any result.

Every cell's process sees ``PEFTKIT_EXPERIMENT`` (the grid's name: its compare file's stem) and
``PEFTKIT_RUN_NAME`` (the cell's name, ``task/method/seedN`` or ``task/method/trialN``): experiment trackers
use them so that a grid is one experiment with a run per cell.

A compare that stops (Ctrl-C, SIGTERM) stops the runs it started: each gets SIGTERM and up to
:data:`STOP_GRACE_S` seconds to end (its run lock released), then SIGKILL. Left alone, a cell's run would
train on as an orphan, holding its folder's lock against the compare started again.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from peftkit import run_dir as outputs
from peftkit.compare.grid import Cell
from peftkit.errors import TrainingError

EXPERIMENT_ENV = "PEFTKIT_EXPERIMENT"
RUN_NAME_ENV = "PEFTKIT_RUN_NAME"
STOP_GRACE_S = 30.0
T = TypeVar("T")
R = TypeVar("R")
_children: set[subprocess.Popen] = set()  # the cells' runs going now (one per device)
_children_lock = threading.Lock()


def cell_env(experiment: str, cell: Cell) -> dict[str, str]:
    """The environment variables that name a cell's run for trackers."""
    return {EXPERIMENT_ENV: experiment, RUN_NAME_ENV: cell.name}


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in os.environ for the block, the previous values restored after it."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_inprocess(cell: Cell, device: str | None, registry: Any, env: dict[str, str]) -> None:
    """Run a cell with :func:`peftkit.train.loop.run` in this process (the device is the process's own)."""
    from peftkit.train import loop as runner

    try:
        with _environ(env):
            runner.run(cell.recipe, registry=registry, overwrite=True)
    finally:
        outputs.setup_logging(None)  # detach the cell's train.log so compare messages stop going there


def run_subprocess(cell: Cell, device: str | None, registry: Any, env: dict[str, str]) -> None:
    """Run a cell as ``python -m peftkit run cell.yaml --overwrite``; output goes to the cell's ``cell.log``."""
    recipe_file = cell.output_dir / "cell.yaml"
    outputs.write_recipe(recipe_file, {**cell.resolved, "output_dir": str(cell.output_dir)})
    env = {**os.environ, **env, outputs.PARENT_ENV: str(os.getpid())}  # the cell stops if this compare is killed
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    with open(cell.output_dir / "cell.log", "w", encoding="utf-8") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peftkit", "run", str(recipe_file), "--overwrite"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
        with _children_lock:
            _children.add(proc)
        try:
            rc = proc.wait()
        finally:  # also when this compare is stopping (a signal raised here): the run stops with it
            with _children_lock:
                _children.discard(proc)
            stop_process(proc)
    if rc != 0:
        tail = (cell.output_dir / "cell.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise TrainingError(f"exit status {rc}; last lines of {cell.output_dir / 'cell.log'}: " + " | ".join(tail))


EXECUTORS: dict[str, Callable[[Cell, str | None, Any, dict[str, str]], None]] = {
    "inprocess": run_inprocess,
    "subprocess": run_subprocess,
}


def visible_devices() -> list[str]:
    """CUDA device ids this process may use (respecting CUDA_VISIBLE_DEVICES); [] on a CPU machine."""
    import torch

    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in env.split(",") if d.strip()] if env is not None else [str(i) for i in range(n)]
    return ids[:n]


def schedule(items: list[T], devices: list[str | None], job: Callable[[T, str | None], R]) -> list[R]:
    """``job(item, device)`` for every item, at most one per device at a time (a job takes a free device and
    gives it back when done); results in the order of ``items``."""
    if len(devices) <= 1:
        return [job(item, devices[0] if devices else None) for item in items]
    free: queue.Queue = queue.Queue()
    for d in devices:
        free.put(d)

    def work(item: T) -> R:
        device = free.get()
        try:
            return job(item, device)
        finally:
            free.put(device)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        try:
            return list(pool.map(work, items))
        except BaseException:  # stopping: the workers wait on their cells' runs, which must stop first
            stop_children()
            raise


def stop_process(proc: subprocess.Popen, grace: float | None = None) -> None:
    """End a cell's run that is still going: SIGTERM, up to ``grace`` seconds (:data:`STOP_GRACE_S`), SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S if grace is None else grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_children() -> None:
    """Stop every cell's run this compare has going (the worker threads' ones)."""
    with _children_lock:
        going = list(_children)
    for proc in going:
        stop_process(proc)
