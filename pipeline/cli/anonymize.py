"""`reel anonymize IN -o OUT [--model M]`: every face of every frame replaced, with an audit."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.cli import add_run_arguments, apply_run_arguments
from pipeline.config import load_config
from pipeline.files import load_json

HELP = "anonymise a video: replace every face by a synthetic one (or mask it), with an audit sidecar"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file to anonymise")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (.mp4, .mkv or .mov)")
    parser.add_argument(
        "--model",
        metavar="PATH_OR_NAME",
        help="face prior (StyleGAN2 checkpoint file or model-zoo name) that invents the synthetic faces; "
        "without one every face is masked (anon.fallback: blur or fill)",
    )
    parser.add_argument(
        "--keep-crops",
        action="store_true",
        help="keep the original face crops in the work directory for review (default: deleted at the end)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with code {STRICT_EXIT} when any face-frame of the output is still above the "
        "same-person threshold (listed in the audit and the report under 'To review')",
    )
    add_run_arguments(parser)


STRICT_EXIT = 3  # --strict: the output was written but some face-frames need review


def run(args: argparse.Namespace) -> int:
    from pipeline.api import anonymize

    # The anonymize preset (recall-first scan, no upscale) comes first; later presets and --set win.
    config = load_config(["anonymize", *args.preset], list(args.sets))
    if args.keep_crops:
        config = replace(config, anon=replace(config.anon, keep_crops=True))
    config = apply_run_arguments(config, args)
    report = anonymize(args.input, args.output, config, overwrite=args.overwrite)
    print(report.summary())
    print(f"audit: {report.audit_path}" + (f", report: {report.html_path}" if report.html_path else ""))
    if report.random_generator:
        print("NOTE: the face prior was a seeded random TEST generator: the pasted 'faces' are not faces.")
    if report.leaked:
        print(f"review: {_frames_to_review(report.audit_path)}")
        if args.strict:
            print(
                f"reel: error: {report.output}: {report.leaked} face-frame(s) above the same-person "
                "threshold (--strict); review them before release",
                file=sys.stderr,
            )
            return STRICT_EXIT
    attack = report.attack or {}
    if attack.get("passed") is False:
        print(
            f"reel: {'error' if args.strict else 'warning'}: {report.output}: restore's own search "
            f"recognises the person again on the output (max SFace cosine {attack.get('max_cosine')}, "
            f"bound < {attack.get('threshold')}); see the audit's attack section",
            file=sys.stderr,
        )
        if args.strict:
            return STRICT_EXIT
    return 0


def _frames_to_review(audit_path: Path | None, shown: int = 12) -> str:
    """The frame numbers above the threshold, worst first, from the audit."""

    if audit_path is None:
        return "see the audit"
    above = load_json(audit_path)["identity"]["above_threshold"]
    frames = list(dict.fromkeys(int(r["frame"]) for r in above))
    more = f" and {len(frames) - shown} more" if len(frames) > shown else ""
    return "frames " + ", ".join(map(str, frames[:shown])) + more + f" (all in {audit_path})"
