"""The run's log: stderr for the person watching, and ``output_dir/train.log`` that stays with the run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(output_dir: Path | None, main: bool = True) -> logging.Logger:
    """Log to stderr and (on the main process) to output_dir/train.log."""
    log = logging.getLogger("peftkit")
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        if getattr(h, "_peftkit", False):
            log.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda record: not getattr(record, "file_only", False))  # e.g. the error the CLI prints itself
    handlers: list[logging.Handler] = [console]
    if output_dir is not None and main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "train.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h._peftkit = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.propagate = False
    return log
