"""The ``peftkit`` command: one small function per subcommand; plugins add more via a hook."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from peftkit.errors import PeftkitError


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="path to a recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe keys, e.g. train.lr=3e-4")


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a recipe (schema + plugin params) without loading any model."""
    from peftkit.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"{args.recipe}: OK (method={recipe.method.name}, task={recipe.task.name}, model={recipe.model.source})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Train a recipe and write output_dir."""
    from peftkit.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from peftkit.runner import run

    summary = run(recipe, overwrite=args.overwrite)
    final = summary.get("final") or {}
    print(json.dumps({"output_dir": recipe.output_dir, "final": final, "params": summary.get("params")}, indent=2))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins as JSON: name, distribution, version, hooks, what they register."""
    from peftkit.plugins import list_plugins

    print(json.dumps(list_plugins(), indent=2))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of recipes (core + every plugin's params)."""
    from peftkit.recipe import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Write the test-split submission file (e.g. afqmc_predict.json) of a finished run."""
    from peftkit.inference import predict_run

    print(predict_run(args.run_dir))
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None] | None]] = {
    "run": (cmd_run, lambda p: (_add_overrides(p), p.add_argument("--overwrite", action="store_true", help="replace an existing run in output_dir"))),
    "validate": (cmd_validate, _add_overrides),
    "schema": (cmd_schema, None),
    "plugins": (cmd_plugins, None),
    "predict": (cmd_predict, lambda p: p.add_argument("run_dir", help="output_dir of a finished run")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peftkit", description="Parameter-efficient fine-tuning from YAML recipes.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"peftkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (func, configure) in COMMANDS.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").strip().splitlines()[0], description=func.__doc__)
        if configure:
            configure(p)
        p.set_defaults(func=func)
    from peftkit.plugins import get_registry

    get_registry().hook.peftkit_add_commands(subparsers=sub)
    return parser


def _version() -> str:
    from peftkit import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("PEFTKIT_DEBUG"))
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except PeftkitError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
