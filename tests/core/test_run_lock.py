"""One writer per run folder: the run lock is taken atomically, and a stale one is taken over by one process only."""

from __future__ import annotations

import json
import multiprocessing
import pathlib
import subprocess
import sys
import time

import pytest

from peftkit.errors import PeftkitError
from peftkit.run_dir import LOCK, run_lock

N = 50


def _slow_unlink(unlink):
    def slow(self, *a, **k):
        time.sleep(0.05)  # widens any window between seeing a lock stale and taking it (as a loaded machine does)
        return unlink(self, *a, **k)

    return slow


def _contend(path, barrier, results, release) -> None:
    pathlib.Path.unlink = _slow_unlink(pathlib.Path.unlink)  # in this child process only
    barrier.wait()  # every process tries at the same instant
    try:
        with run_lock(path):
            results.put("held")
            release.wait(60)  # hold it until every other process has tried
    except PeftkitError as exc:
        results.put("refused" if "being written by another peftkit run" in str(exc) else f"error: {exc}")
    except Exception as exc:  # anything else is a bug the assertion below shows
        results.put(f"error: {type(exc).__name__}: {exc}")


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize("before", ["no lock file", "a stale lock file"])
def test_of_many_simultaneous_starts_exactly_one_holds_the_lock(tmp_path, before):
    import socket

    path = tmp_path / "out"
    path.mkdir()
    if before == "a stale lock file":  # left by a run that was killed: every contender sees it stale at once
        stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier"}
        (path / LOCK).write_text(json.dumps(stale))
    ctx = multiprocessing.get_context("fork")
    barrier, results, release = ctx.Barrier(N), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_contend, args=(path, barrier, results, release)) for _ in range(N)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(N)]
    release.set()
    for p in procs:
        p.join(60)
    assert sorted(set(got)) == ["held", "refused"] and got.count("held") == 1, got
    assert all(p.exitcode == 0 for p in procs)
    assert not (path / LOCK).exists()  # released by the one holder


def test_a_lock_from_another_machine_is_respected(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    (path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "now"}))
    with pytest.raises(PeftkitError, match=r"lock of a peftkit run on another machine \(pid 1 on elsewhere"):
        with run_lock(path):
            pass
    assert json.loads((path / LOCK).read_text())["host"] == "elsewhere.example"  # left for its owner


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with run_lock(tmp_path):
            assert json.loads((tmp_path / LOCK).read_text())["pid"] > 0
            raise RuntimeError("boom")
    assert not (tmp_path / LOCK).exists()
    with run_lock(tmp_path):  # and can be taken again
        pass
