"""``peftkit export``, ``peftkit serve`` and ``peftkit api-key``: argument parsing only (imports nothing heavy)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peftkit.serve.export import QUANTIZE_CHOICES  # tuples; neither module imports torch at module level
from peftkit.serve.models import PRECISIONS


def cmd_export(args: argparse.Namespace) -> int:
    """Write a finished run as a transformers folder (merged, or --adapter only) with tokenizer and model card."""
    from peftkit.run_dir import setup_logging
    from peftkit.serve.export import export_run

    setup_logging(None)
    out = export_run(
        args.run_dir,
        args.out,
        adapter=args.adapter,
        quantize=args.quantize,
        overwrite=args.overwrite,
        eval_rows=args.eval_rows,
        overrides=args.overrides,
    )
    print(f"exported {args.run_dir} to {out} (load it with transformers.pipeline('text-classification', model=...))")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="output_dir of a finished run")
    p.add_argument("--out", required=True, help="folder to write (must be new or empty, unless --overwrite)")
    p.add_argument("--adapter", action="store_true", help="write only the adapter in peft's format (not merged)")
    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        help="also measure a dynamic-int8 CPU variant (dev accuracy and speed in the card); serve then loads it int8",
    )
    p.add_argument("--eval-rows", type=int, default=1000, metavar="N", help="dev rows for --quantize's measurement")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument(
        "overrides", nargs="*", default=[], metavar="key=value", help="as for predict, e.g. task.params.data_dir=..."
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve runs or exported folders over HTTP: /v1/classify, /v1/chat/completions, API keys, /metrics.

    Classifiers answer /v1/classify (dynamic batching); decoder runs answer /v1/chat/completions (OpenAI's shape)."""
    from peftkit.serve.server import ServeConfig, run_server

    cfg = ServeConfig.from_args(args)
    return run_server(cfg)


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models",
        nargs="+",
        metavar="[NAME=]RUN_OR_EXPORT",
        help="finished run dirs or `peftkit export` folders; NAME= sets the model name (default: the folder name)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each loads the models)")
    p.add_argument("--keys", metavar="FILE", help="API keys file (JSON, hashed; see `peftkit api-key`)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--max-batch", type=int, default=32, help="inputs in one forward pass at most")
    p.add_argument("--max-queue", type=int, default=256, help="inputs waiting at most; more are answered 503")
    p.add_argument("--max-inputs", type=int, default=64, help="inputs in one request at most")
    p.add_argument("--max-chars", type=int, default=20000, help="characters in one input at most (else 422)")
    p.add_argument("--max-body", type=int, default=1_000_000, help="request body bytes at most (else 413)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for inference (0 = torch's default)")
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="batches run at once, each on its own thread (with --threads 1: one core each, no OpenMP spin-waits)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=1024,
        help="chat: answer tokens a request may ask for at most, and what it gets when it asks none (within the context)",
    )  # fmt: skip
    p.add_argument("--max-chat-queue", type=int, default=16, help="chat requests in flight at most; more get 503")
    p.add_argument("--log-texts", action="store_true", help="log request texts, with phones/IDs/cards/e-mails masked")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="how classifiers compute: float32 (default), bfloat16 (CPUs with avx512_bf16/AMX, GPUs), or dynamic "
        "int8 linear layers (default for an export made with --quantize int8); see docs/serving.md for measurements",
    )
    p.add_argument("--no-merge", action="store_true", help="keep a lone adapter unmerged (merging is faster)")


def cmd_api_key(args: argparse.Namespace) -> int:
    """Create an API key: its sha256 goes into the keys file, the key itself is printed once."""
    from peftkit.serve.auth import add_key

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    key = add_key(Path(args.file), args.name, models, rate=args.rate, burst=args.burst)
    print(json.dumps({"name": args.name, "key": key, "models": models or ["*"]}))
    print("store the key now: only its hash is kept in", args.file, file=sys.stderr)
    return 0


def _api_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="keys file to add to (created if missing); `peftkit serve --keys FILE` reads it")
    p.add_argument("--name", required=True, help="who the key is for (shown in logs instead of the key)")
    p.add_argument("--models", default="*", help="comma-separated model names the key may use (* = all)")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second allowed on average")
    p.add_argument("--burst", type=int, default=40, help="requests allowed at once above the rate")


COMMANDS = {
    "export": (cmd_export, _export_args),
    "serve": (cmd_serve, _serve_args),
    "api-key": (cmd_api_key, _api_key_args),
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``peftkit`` parser."""
    for name, (func, configure) in COMMANDS.items():
        doc = (func.__doc__ or "").strip()
        p = subparsers.add_parser(name, help=doc.splitlines()[0], description=doc)
        configure(p)
        p.set_defaults(func=func)
