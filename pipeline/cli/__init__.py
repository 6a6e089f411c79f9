"""The `reel` command line: one module per subcommand.

Each subcommand module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`,
and imports nothing heavy at module level (so `reel --help` is instant). Expected failures are
PipelineErrors: printed as one line `reel: error: <file>: <problem>`, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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
    except PipelineError as exc:
        print(f"reel: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("reel: interrupted; finished work is kept in the work directory", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
