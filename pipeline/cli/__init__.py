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
import re
import sys
import typing
from collections.abc import Sequence

from pipeline import __version__
from pipeline.errors import PipelineError, did_you_mean, one_line
from pipeline.run.preflight import estimated_bytes
from pipeline.run.workdir import default_workdir

if typing.TYPE_CHECKING:
    from pipeline.config import Config

# Subcommand name -> module. The order is the order of `reel --help`.
COMMANDS: dict[str, str] = {
    "probe": "pipeline.cli.probe",
    "restore": "pipeline.cli.restore",
    "preview": "pipeline.cli.preview",
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
        choices=("auto", "ray", "local"),
        help="auto (default: Ray, embedded or --address; a small job in-process), ray or local (in-process)",
    )
    parser.add_argument(
        "--address", help="Ray cluster address (HOST:PORT, auto or ray://...); sets run.address"
    )
    parser.add_argument("--workdir", help="work directory (default: OUTPUT.work beside the output)")
    people = parser.add_mutually_exclusive_group()
    people.add_argument(
        "--only-people",
        metavar="DIR",
        help="process (restore or hide) only the people in these photos: one photo, or one subfolder "
        "of photos, per person; the others are left as without a face model (sets people.only)",
    )
    people.add_argument(
        "--except-people",
        metavar="DIR",
        help="process everyone but the people in these photos (as --only-people; sets people.exclude); "
        "anonymise hides a face it cannot decide either way",
    )
    add_config_arguments(parser)


def apply_run_arguments(config: Config, args: argparse.Namespace) -> Config:
    """`config` with --model, --executor, --address, --workdir and the choice of people applied."""

    from dataclasses import replace

    if getattr(args, "model", None) is not None:
        config = replace(config, prior=replace(config.prior, model=args.model))
    only, exclude = getattr(args, "only_people", None), getattr(args, "except_people", None)
    if only is not None or exclude is not None:
        config = replace(config, people=replace(config.people, only=only, exclude=exclude))
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


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line like every other error (`reel: error: ...`), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        command = self.prog.removeprefix("reel").strip()
        help_hint = f"`reel {command} -h`" if command else "`reel -h`"
        print(f"reel: error: {usage_message(message, self)}; see {help_hint}", file=sys.stderr)
        sys.exit(2)


_INVALID_VALUE = re.compile(r"argument (?P<opt>[^:]+): invalid (?P<kind>\w+) value: (?P<value>.+)")
_INVALID_CHOICE = re.compile(
    r"argument (?P<opt>[^:]+): invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.+)\)"
)
_KIND_WORDS = {"int": "a whole number", "float": "a number", "Path": "a path"}


def usage_message(message: str, parser: argparse.ArgumentParser) -> str:
    """argparse's own wording made plain: which option, what was given, what was expected."""
    if m := _INVALID_CHOICE.fullmatch(message):
        choices = [c.strip().strip("'") for c in m["choices"].split(",")]
        value, opt = m["value"], m["opt"].split("/")[-1]
        what = "a command" if opt == "COMMAND" else f"a choice of {opt}"
        return f"{value!r} is not {what}{did_you_mean(value, choices)}; choose from {', '.join(choices)}"
    if message.startswith("the following arguments are required: "):
        return f"missing {message.removeprefix('the following arguments are required: ')}"
    if m := _INVALID_VALUE.fullmatch(message):
        opt = m["opt"].split("/")[-1]
        return f"{opt} {m['value']}: expected {_KIND_WORDS.get(m['kind'], m['kind'])}"
    if m := re.fullmatch(r"argument (?P<opt>[^:]+): (?P<rest>.+)", message):
        opts = m["opt"].split("/")
        rest = m["rest"]
        return rest if any(rest.startswith(o) for o in opts) else f"{opts[-1]}: {rest}"
    if message.startswith("unrecognized arguments: "):
        words = message.removeprefix("unrecognized arguments: ").split()
        known = _option_strings(parser)
        hint = did_you_mean(words[0], known) if words and words[0].startswith("-") else ""
        return f"unknown argument(s) {' '.join(words)}{hint}"
    return message


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of `parser` and of its subcommands (unknown arguments are caught at the top)."""
    found: list[str] = []
    for action in parser._actions:
        found.extend(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_option_strings(sub))
    return found


def whole_factor(option: str) -> typing.Callable[[str], int]:
    """An argparse type: a whole number of 1 or more, errors naming `option`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} {text}: expected a whole number of 1 or more"
            ) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} {text}: must be 1 or more")
        return value

    parse.__name__ = "whole number"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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

    if args.verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    output = getattr(args, "output", None)
    needed = None
    if output is not None:
        try:
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

    work = default_workdir(Path(output), getattr(args, "workdir", None))
    if work.is_dir():
        return f"finished work is kept in {work}; run the same command again to resume"
    return f"{output} was not written (an existing file is left as it was)"


if __name__ == "__main__":
    sys.exit(main())
