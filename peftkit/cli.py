"""The ``peftkit`` command: one small function per subcommand; plugins add more via a hook.

Each command is a ``cmd_*`` function registered with :func:`command`, next to the function that declares
its arguments; its docstring is its ``--help`` (and the CLI reference). Heavy modules are imported inside
the command that needs them, so ``peftkit validate`` and ``peftkit plugins`` never import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from peftkit import __version__
from peftkit.errors import PeftkitError

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]
COMMANDS: dict[str, tuple[Handler, Arguments | None]] = {}  # in the order `peftkit --help` lists them


def command(name: str, arguments: Arguments | None = None) -> Callable[[Handler], Handler]:
    """Register ``cmd_*`` as ``peftkit NAME``, with ``arguments`` adding its arguments to its parser."""

    def register(func: Handler) -> Handler:
        COMMANDS[name] = (func, arguments)
        return func

    return register


def _add_overrides(p: argparse.ArgumentParser, help: str = "override recipe keys, e.g. train.lr=3e-4") -> None:
    # default=[]: without it argparse calls the optional overrides "required" when the recipe is missing
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value", help=help)


def _add_recipe(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="path to a recipe YAML file")
    _add_overrides(p)


def _processes(raw: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {raw!r}")
    return n


def _run_args(p: argparse.ArgumentParser) -> None:
    _add_recipe(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in output_dir (its files are deleted)"
    )
    g.add_argument(
        "--resume", action="store_true", help="continue the run in output_dir from its newest complete checkpoint"
    )
    p.add_argument(
        "--num-processes",
        type=_processes,
        default=1,
        metavar="N",
        help="train data-parallel in N processes (one per GPU, or N CPU processes with gloo); "
        "train.batch_size is per process. Multi-node/FSDP/DeepSpeed: use `accelerate launch -m peftkit run ...`",
    )


def _relaunch(args: argparse.Namespace) -> int:
    """Run this same command in N processes through torch.distributed (what `accelerate launch` does)."""
    import subprocess

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.num_processes}"]
    cmd = [*launcher, "-m", "peftkit", "run", args.recipe, *args.overrides]
    cmd += ["--overwrite"] if args.overwrite else []
    cmd += ["--resume"] if args.resume else []
    return subprocess.call(cmd)


@command("run", _run_args)
def cmd_run(args: argparse.Namespace) -> int:
    """Train a recipe and write output_dir."""
    from peftkit.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.num_processes > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(args)
    from peftkit.train.loop import run

    summary = run(recipe, overwrite=args.overwrite, resume=args.resume)
    shown = {
        "output_dir": recipe.output_dir,
        "final": summary.get("final") or {},
        **({"test": summary["test"]} if "test" in summary else {}),
        "params": summary.get("params"),
    }
    print(json.dumps(shown, indent=2))
    return 0


def _validate_args(p: argparse.ArgumentParser) -> None:
    _add_recipe(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="also fail (exit 2) when the data a run would read is missing or unreadable here",
    )


@command("validate", _validate_args)
def cmd_validate(args: argparse.Namespace) -> int:
    """Check a recipe (schema + plugin params) without loading any model; then whether its data is on this machine."""
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import data_problems, load_recipe, objective_warnings

    recipe = load_recipe(args.recipe, args.overrides)
    missing, plugins = data_problems(recipe), get_registry().problems()
    advice = objective_warnings(recipe)
    if (missing or plugins) and args.strict:
        lines = "".join(f"\n  - {line}" for line in missing + plugins)
        what = " and ".join(
            (["the data a run would read is missing or unreadable on this machine"] if missing else [])
            + (["an installed plugin could not be loaded"] if plugins else [])
        )
        raise PeftkitError(f"{args.recipe} is valid, but {what}:{lines}")
    names = f"method={recipe.method.name}, task={recipe.task.name}, model={recipe.model.source}"
    print(f"{args.recipe}: OK ({names})", flush=True)
    for line in missing:
        print(f"warning: {line} (a run on this machine would stop here; --strict makes this an error)", file=sys.stderr)
    for line in plugins:
        print(f"warning: {line} (--strict makes this an error)", file=sys.stderr)
    for line in advice:  # the recipe runs as it is; it would do better changed
        print(f"warning: {line}", file=sys.stderr)
    return 0


@command("schema")
def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of recipes (core + every plugin's params)."""
    from peftkit.recipe import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


@command("plugins")
def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins as JSON: name, distribution, version, hooks, what they register, and under
    "summaries" each registered object's one-line summary by kind and name (a model source's names its models
    and their licences: the packaged models' terms, Gemma's included).

    A plugin that failed to load is listed with its "error"; one switched off through PEFTKIT_DISABLE_PLUGINS
    with "disabled" (and without hooks or names: nothing of it is imported).
    """
    from peftkit.plugin.registry import list_plugins

    print(json.dumps(list_plugins(), indent=2))
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="output_dir of a finished run")
    _add_overrides(
        p,
        "change where the data is or how inference runs: task.params.*, eval.batch_size, eval.merged, "
        "train.mixed_precision (e.g. task.params.data_dir=/data/clue/afqmc)",
    )


@command("predict", _predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    """Write the test-split submission file (e.g. afqmc_predict.json) of a finished run."""
    from peftkit.evaluation.runs import predict_run
    from peftkit.run_dir import setup_logging

    setup_logging(None)
    print(predict_run(args.run_dir, overrides=args.overrides))
    return 0


def _new_plugin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="plugin name, e.g. my-method (the package becomes peftkit-my-method)")
    p.add_argument("--dir", default=".", help="folder to create the package in")


@command("new-plugin", _new_plugin_args)
def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Create a plugin package (a method, a task, tests) that passes the conformance suite as generated."""
    from peftkit.kit.scaffold import new_plugin

    root = new_plugin(args.name, args.dir)
    print(f"created {root}\nnext: pip install -e {root} && peftkit plugins && pytest {root / 'tests'}")
    return 0


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="compare file (YAML): base recipe, methods, tasks, seeds")
    _add_overrides(p, "override recipe keys in every cell, e.g. train.max_steps=5")
    p.add_argument(
        "--dry-run", action="store_true", help="print one line per cell (status, method, lr, hash, folder); run nothing"
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only cells whose name matches, e.g. 'afqmc/*' (repeatable)",
    )
    p.add_argument(
        "--devices",
        metavar="IDS",
        help="CUDA device ids to spread cells over, e.g. 0,1 (default: the file's `devices`)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write <output_dir>/report at the end")


@command("compare", _compare_args)
def cmd_compare(args: argparse.Namespace) -> int:
    """Run every cell of a compare file (methods × tasks × seeds), skipping finished ones, then write the report."""
    from peftkit.compare.execute import run_compare
    from peftkit.compare.grid import load_compare
    from peftkit.run_dir import setup_logging

    setup_logging(None)
    grid = load_compare(args.grid, args.overrides)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices is not None else None
    res = run_compare(grid, dry_run=args.dry_run, only=args.only, devices=devices, report=not args.no_report)
    if res.report_dir:
        print(f"report: {res.report_dir / 'report.md'} (also .html, .csv, .json)")
    for name in res.failed:
        why = res.status[name].removeprefix("failed: ")
        print(f"failed: {name}: {why} (see {grid.output_dir / name / 'cell.log'})", file=sys.stderr)
    return 1 if res.failed else 0


def _report_args(p: argparse.ArgumentParser) -> None:
    where = "run output_dirs, or folders searched for them (e.g. a compare output_dir)"
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help=where)
    p.add_argument("--out", help="report folder (default: RUN_DIR/report when one RUN_DIR is given)")
    p.add_argument("--title", default="peftkit comparison", help="report title")
    p.add_argument("--metric", help="metric to compare (default: each task's main metric)")
    p.add_argument(
        "--split",
        choices=["dev", "test"],
        default="dev",
        help="what to compare: dev (default; each run's best checkpoint on dev) or test (that checkpoint on a "
        "labelled test split: runs with eval.predict on FewCLUE test_public or an own test file with labels)",
    )


@command("report", _report_args)
def cmd_report(args: argparse.Namespace) -> int:
    """Build a report (markdown, CSV, JSON, HTML with plots) from finished run dirs or folders holding them."""
    from pathlib import Path

    from peftkit.compare.report.write import write_report
    from peftkit.run_dir import setup_logging

    setup_logging(None)
    if args.out is None and len(args.run_dirs) > 1:
        raise PeftkitError("several run dirs given: say where the report goes with --out DIR")
    out = args.out or Path(args.run_dirs[0]) / "report"
    out = write_report(args.run_dirs, out, title=args.title, metric=args.metric, split=args.split)
    print(f"report: {out / 'report.md'} (also .html, .csv, .json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``peftkit`` parser: the commands above, then those plugins add (``peftkit_add_commands``)."""
    parser = argparse.ArgumentParser(prog="peftkit", description="Parameter-efficient fine-tuning from YAML recipes.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"peftkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (func, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").strip().splitlines()[0], description=func.__doc__)
        if arguments:
            arguments(p)
        p.set_defaults(func=func)
    from peftkit.serve.cli import add_commands as add_serve_commands  # export, serve, api-key (imports nothing heavy)

    add_serve_commands(sub)
    from peftkit.plugin.registry import get_registry

    get_registry().hook.peftkit_add_commands(subparsers=sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, but overrides (``a.b=c``) may also follow options (``run r.yaml --overwrite train.lr=1e-4``)
    and ``--debug`` may follow the command."""
    args, rest = parser.parse_known_args(argv)
    extra = [a for a in rest if a != "--debug"]
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = list(args.overrides or []) + extra
        extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


INTERRUPT_HINTS = {
    "run": "run the same command with --resume to continue from the last checkpoint (train.checkpoint_every, epoch ends)",
    "compare": "run the same command again to go on: finished cells are kept, the interrupted one is redone",
}

# commands that report plugin problems themselves: `plugins` lists them, `validate` weighs them (--strict),
# `run` writes them to its train.log too
QUIET_ABOUT_PLUGINS = ("plugins", "validate", "run")


def main(argv: list[str] | None = None) -> int:
    """Run ``peftkit ARGV``; the exit status: 0, 2 for bad input (one line, no traceback), 130 on Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("PEFTKIT_DEBUG"))
    try:
        parser = build_parser()
        args = _parse(parser, argv)
        if args.command not in QUIET_ABOUT_PLUGINS:
            from peftkit.plugin.registry import get_registry

            for line in get_registry().problems():
                print(f"warning: {line}", file=sys.stderr)
        return int(args.func(args) or 0)
    except PeftkitError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or peftkit.train.stop.RunInterrupted (SIGTERM too: exit 143)
        command = next((a for a in argv if not a.startswith("-")), "")
        hint = INTERRUPT_HINTS.get(command, "")
        what = "interrupted" if getattr(exc, "signum", 2) == 2 else str(exc).split(" at step")[0]
        print(f"{what}{'; ' + hint if hint else ''}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
