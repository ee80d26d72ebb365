"""Starting the service on uvicorn: one process, or ``--workers N`` processes sharing the port.

Why uvicorn + FastAPI: uvicorn is the ASGI server vLLM's and most Python model servers' HTTP layer
run on, with graceful shutdown on SIGTERM (stop accepting, finish in-flight requests, then exit) and
multi-process workers built in; FastAPI adds routing and exception handlers on Starlette at little
cost. Batching needs one event loop per process, which ASGI gives.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from peftkit.errors import PeftkitError

CONFIG_ENV = "PEFTKIT_SERVE_CONFIG"


@dataclass
class ServeConfig:
    """Everything ``peftkit serve`` was told (JSON-able, so workers can read it from the environment)."""

    models: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    keys: str | None = None
    max_wait_ms: float = 5.0
    max_batch: int = 32
    max_queue: int = 256
    max_inputs: int = 64
    max_chars: int = 20_000
    max_body: int = 1_000_000
    threads: int = 0
    parallel: int = 1
    log_texts: bool = False
    merge: bool = True
    precision: str | None = None  # None: float32, or int8 for an export marked --quantize int8
    graceful_seconds: int = 30
    max_tokens: int = 1024
    max_chat_queue: int = 16
    rate_dir: str | None = None  # set by run_server for --workers N: the rate-limit buckets all workers share

    @classmethod
    def from_args(cls, args: Any) -> ServeConfig:
        cfg = cls(
            models=list(args.models), host=args.host, port=args.port, workers=args.workers, keys=args.keys,
            max_wait_ms=args.max_wait_ms, max_batch=args.max_batch, max_queue=args.max_queue,
            max_inputs=args.max_inputs, max_chars=args.max_chars, max_body=args.max_body, threads=args.threads,
            parallel=args.parallel,
            log_texts=args.log_texts, merge=not args.no_merge, precision=args.precision, max_tokens=args.max_tokens,
            max_chat_queue=args.max_chat_queue,
        )  # fmt: skip
        cfg.check()
        return cfg

    def check(self) -> None:
        """One clear line for each impossible setting, before anything loads."""
        from peftkit.serve.models import parse_spec

        for name in ("workers", "parallel", "max_batch", "max_queue", "max_inputs", "max_chars", "max_body",
                     "max_tokens", "max_chat_queue"):  # fmt: skip
            if getattr(self, name) < 1:
                raise PeftkitError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be 1 or more")
        if self.max_wait_ms < 0:
            raise PeftkitError(f"--max-wait-ms {self.max_wait_ms}: must be 0 or more")
        if self.max_queue < self.max_inputs:
            raise PeftkitError(f"--max-queue {self.max_queue} is below --max-inputs {self.max_inputs}: "
                               "a full-size request could never be queued; raise --max-queue")  # fmt: skip
        for spec in self.models:
            parse_spec(spec)
        if self.keys and not os.path.isfile(self.keys):
            raise PeftkitError(
                f"--keys {self.keys}: no such file; create it with `peftkit api-key {self.keys} --name ...`"
            )


def _logging() -> None:
    """peftkit's and the access log's lines on stderr (the access log is already JSON)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("peftkit.serve.access")
    access.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%H:%M:%S"))
    for name in ("peftkit", "peftkit.serve"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [plain] if name == "peftkit" else []
        lg.setLevel(logging.INFO)


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the config travels in ``PEFTKIT_SERVE_CONFIG``."""
    from peftkit.serve.app import create_app

    _logging()
    return create_app(ServeConfig(**json.loads(os.environ[CONFIG_ENV])))


def run_server(cfg: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT; uvicorn drains in-flight requests first (up to ``graceful_seconds``)."""
    import uvicorn

    common = dict(
        host=cfg.host, port=cfg.port, access_log=False, log_level="info",
        timeout_graceful_shutdown=cfg.graceful_seconds,
    )  # fmt: skip
    if cfg.workers == 1:
        from peftkit.serve.app import create_app

        _logging()
        uvicorn.run(create_app(cfg), **common)
        return 0
    rate_dir = tempfile.mkdtemp(prefix="peftkit-rates-")  # one bucket a key for the whole service
    os.environ[CONFIG_ENV] = json.dumps({**asdict(cfg), "rate_dir": rate_dir})
    # every worker writes its metrics here; /metrics of any worker sums them (prometheus-client multiprocess)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="peftkit-metrics-"))
    try:
        uvicorn.run("peftkit.serve.server:app_from_env", factory=True, workers=cfg.workers, **common)
    finally:
        shutil.rmtree(rate_dir, ignore_errors=True)
    return 0
