"""The `reel` command line: one module per subcommand.

Each subcommand module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`,
and imports nothing heavy at module level (so `reel --help` is instant). Every failure is printed as
one line `reel: error: <file>: <problem>` naming the user's own file (never a temporary part), with
exit code 2 for expected failures (PipelineErrors) and 1 for anything else; `-v` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pipeline import __version__
from pipeline.errors import PipelineError

# Subcommand name -> module. The order is the order of `reel --help`.
COMMANDS: dict[str, str] = {
    "probe": "pipeline.cli.probe",
    "restore": "pipeline.cli.restore",
    "anonymize": "pipeline.cli.anonymize",
    "batch": "pipeline.cli.batch",
    "submit": "pipeline.cli.jobs",
    "models": "pipeline.cli.models",
    "report": "pipeline.cli.report",
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how a restore or anonymise job runs (`apply_run_arguments` puts them in the config)."""
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--executor",
        choices=("ray", "local"),
        help="ray (default: embedded or --address) or local (in-process)",
    )
    parser.add_argument(
        "--address", help="Ray cluster address (HOST:PORT, auto or ray://...); sets run.address"
    )
    parser.add_argument("--workdir", help="work directory (default: OUTPUT.work beside the output)")
    add_config_arguments(parser)


def apply_run_arguments(config: Any, args: argparse.Namespace) -> Any:
    """`config` (a pipeline.config.Config) with --model, --executor, --address and --workdir applied."""
    from dataclasses import replace

    if getattr(args, "model", None) is not None:
        config = replace(config, prior=replace(config.prior, model=args.model))
    run_options = {"executor": args.executor, "address": args.address, "workdir": args.workdir}
    return replace(config, run=replace(config.run, **{k: v for k, v in run_options.items() if v is not None}))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the pipeline."""
    parser.add_argument(
        "--preset",
        action="append",
        default=[],
        metavar="NAME|FILE",
        help="YAML preset from configs/ (newsreel, cartoon, anonymize, master, delivery) or a file; "
        "repeatable, later ones win",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set search.steps=50; repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reel",
        description="Restore archival video; faces are restored by latent search in a generative prior "
        "(their fine detail is invented, not recovered).",
    )
    parser.add_argument("--version", action="version", version=f"reel {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        commands = getattr(module, "SUBCOMMANDS", {name: module})
        for sub_name, sub_module in commands.items():
            p = sub.add_parser(sub_name, help=sub_module.HELP, description=sub_module.HELP)
            sub_module.add_arguments(p)
            p.set_defaults(_run=sub_module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"reel: interrupted; {_kept(args)}", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line naming the user's file; -v adds the traceback
        return _fail(exc, args)


def _fail(exc: BaseException, args: argparse.Namespace) -> int:
    from pipeline.errors import one_line

    if args.verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    output = getattr(args, "output", None)
    needed = None
    if output is not None:
        try:
            from pipeline.run.preflight import estimated_bytes

            needed = estimated_bytes(output)
        except Exception:  # the message must come out whatever else is broken
            needed = None
    message = one_line(exc, input=getattr(args, "input", None), output=output, needed=needed)
    print(f"reel: error: {message}", file=sys.stderr)
    if isinstance(exc, PipelineError):
        return exc.exit_code
    return 1


def _kept(args: argparse.Namespace) -> str:
    """What an interrupted run leaves: the work directory it resumes from, when there is one."""
    output = getattr(args, "output", None)
    if output is None:
        return "nothing was changed"
    from pathlib import Path

    from pipeline.run.workdir import default_workdir

    work = default_workdir(Path(output), getattr(args, "workdir", None))
    if work.is_dir():
        return f"finished work is kept in {work}; run the same command again to resume"
    return f"{output} was not written (an existing file is left as it was)"


if __name__ == "__main__":
    sys.exit(main())
