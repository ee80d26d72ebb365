"""One writer per run folder: ``output_dir/.peftkit-run.lock``, held with ``flock`` while a run writes.

The lock is the kernel's, not the file's: ``fcntl.flock`` on the open lock file is exclusive, taken in one
system call, and released by the kernel when its holder exits for any reason (``kill -9`` included). So there
is no window in which two processes both see a stale lock and both take it over: a lock file whose flock is
free *is* stale, and taking its flock is what takes it over. The file's content (pid, host, start time) only
serves the error message. A lock file written on another machine is respected even when its flock is free
(a flock may not cross a network filesystem), as before: delete it if that run is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError

LOCK = ".peftkit-run.lock"


def _read(fd: int) -> dict[str, Any] | None:
    """The holder's facts from an open lock file (None when empty or not ours)."""
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        held = json.loads(os.read(fd, 4096).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return held if isinstance(held, dict) else None


def describe(held: dict[str, Any]) -> str:
    """A lock holder's facts as errors name them: ``pid 123 on host, since 2026-12-04 21:31:14``."""
    return f"pid {held.get('pid')} on {held.get('host')}, since {held.get('started')}"


def _busy(path: Path, held: dict[str, Any] | None) -> PeftkitError:
    who = describe(held) if held else "starting now"
    return PeftkitError(
        f"{path} is being written by another peftkit run ({who}); wait for it or stop it, or choose another output_dir"
    )


def _locked_fd(path: Path, lock: Path) -> int:
    """An fd of ``lock`` whose exclusive flock this process holds; PeftkitError if another process holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _read(fd)
            os.close(fd)
            raise _busy(path, held) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        # the holder unlinked the file between our open and our flock: we hold a lock on a file nobody else
        # will open again, while a newcomer may lock a fresh one. Start over on the file now at that path.
        os.close(fd)


def holder(path: Path) -> dict[str, Any] | None:
    """The live run writing ``path`` (its lock file's pid, host and start time), or None.

    Reads the lock file and asks the kernel whether its pid is alive; it takes no flock, so looking never
    gets in the way of a run that is starting. A lock file of another machine counts as held (as in
    :func:`run_lock`); one whose pid is gone is stale.
    """
    try:
        held = json.loads((path / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(held, dict) or not isinstance(held.get("pid"), int):
        return None
    if held.get("host") != socket.gethostname():
        return held
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return held


@contextlib.contextmanager
def run_lock(path: Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``path/.peftkit-run.lock`` while a run writes ``path``.

    A second run into the same folder (another terminal, a compare rerun while an orphaned cell still trains)
    stops at once with an error naming the holder, instead of both writing it. A lock left by a process that is
    gone (its flock was released by the kernel) is taken over. ``enabled=False`` (the non-main processes of a
    multi-process run) does nothing.

    Raises:
        PeftkitError: another live run holds the lock, or the lock file names a run on another machine.
    """
    if not enabled:
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK
    fd = _locked_fd(path, lock)
    try:
        held = _read(fd)
        if held and held.get("host") != socket.gethostname():
            raise PeftkitError(
                f"{path} holds the lock of a peftkit run on another machine (pid {held.get('pid')} on "
                f"{held.get('host')}, since {held.get('started')}); wait for it, or, if that run is gone, "
                f"delete {lock}"
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode("utf-8"))
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        # unlink while the flock is still held, so nobody can lock this file after we let go of it
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
