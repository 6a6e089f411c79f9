"""`reel report OUTPUT`: the HTML report again, from `OUTPUT.report.json` and the work directory.

Nothing is searched, composed or encoded again: the page is drawn from the stored artifacts (crops,
restorations, the "where is this invented?" spread) and a few frames decoded from the output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.report.build import rerender

HELP = "re-render OUTPUT.report.html from the JSON report and the work directory (no recomputation)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", type=Path, help="a restored output (its OUTPUT.report.json must exist)")
    parser.add_argument(
        "--workdir", type=Path, help="work directory, when it moved (default: the one the JSON names)"
    )


def run(args: argparse.Namespace) -> int:

    path = rerender(args.output, args.workdir)
    print(path)
    return 0
