"""`reel restore IN -o OUT [--scale N]`: decode → upscale → encode, keeping timestamps, audio and tags."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import add_config_arguments

HELP = "restore a video: upscale every frame and re-encode with audio, timestamps and colour tags kept"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file to restore")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (.mp4, .mkv or .mov)")
    parser.add_argument("--scale", type=int, help="upscale factor (overrides upscale.scale)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.run.restore_basic import restore_frames

    sets = list(args.sets)
    if args.scale is not None:
        sets.append(f"upscale.scale={args.scale}")
    config = load_config(args.preset, sets)
    result = restore_frames(args.input, args.output, config, overwrite=args.overwrite)
    print(
        f"{result.output}: {result.frames} frames at {result.size[0]}x{result.size[1]} "
        f"in {result.seconds:.1f}s ({result.fps:.1f} frames/s)"
        + (f", {result.damaged} damaged input frame(s)" if result.damaged else "")
    )
    return 0
