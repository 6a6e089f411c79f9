"""`reel batch MANIFEST.yaml`: restore many videos on one Ray instance; a summary at the end."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli import add_config_arguments
from pipeline.files import save_json
from pipeline.report.build import batch_index

HELP = "restore every video of a YAML manifest on one Ray instance (failed items are reported, others go on)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="YAML manifest: items with input, output, preset, set")
    add_config_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="redo items whose output exists")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: embedded local Ray)")
    parser.add_argument(
        "--summary",
        default=None,
        metavar="FILE",
        help="also write the summary as JSON (default: <manifest>.summary.json beside the manifest)",
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from pipeline.api import batch

    sets = list(args.sets)
    if args.address:
        sets.append(f"run.address={args.address}")
    report = batch(args.manifest, presets=args.preset, sets=sets, overwrite=args.overwrite)
    print(report.summary())
    manifest = Path(args.manifest)
    summary = Path(args.summary) if args.summary else manifest.with_name(manifest.stem + ".summary.json")

    body = {"manifest": report.manifest, "items": [asdict(r) for r in report.items]}
    save_json(summary, body)
    print(f"summary written to {summary}", file=sys.stderr)

    index = batch_index(body, summary.with_name(manifest.stem + ".report.html"))
    print(f"index of the reports: {index}", file=sys.stderr)
    return 1 if report.failed else 0
