"""`reel restore IN -o OUT [--scale N]`: decode → upscale → encode, keeping timestamps, audio and tags."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pipeline import INVENTED_DETAIL_NOTICE
from pipeline.cli import add_run_arguments, apply_run_arguments, whole_factor
from pipeline.config import Config, load_config
from pipeline.io.presets import SEQUENCE_PRESETS
from pipeline.io.sequence import is_sequence_output
from pipeline.run.join import face_sentence

HELP = "restore a video: upscale every frame and re-encode with audio, timestamps and colour tags kept"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file to restore")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (.mp4, .mkv or .mov)")
    parser.add_argument(
        "--scale", type=whole_factor("--scale"), help="upscale factor (overrides upscale.scale)"
    )
    parser.add_argument(
        "--model",
        metavar="PATH_OR_NAME",
        help="face prior (StyleGAN2 checkpoint file or model-zoo name): detect, track and restore every "
        "face by latent search (the restored detail is invented, not recovered); sets prior.model",
    )
    parser.add_argument(
        "--reference-photos",
        metavar="DIR",
        help="photos of people (one photo, or one subfolder of photos, per person): a person recognised "
        "in the video is restored towards their photos (the footage still decides: every face meets the "
        "bound); needs --model; sets people.reference",
    )
    add_run_arguments(parser)


NO_MODEL_LINE = (
    "reel: no face model (--model): faces are upscaled with the rest of the frame, not restored; "
    "`reel models fetch ffhq-256` gets one (`reel models list` shows all)"
)


def run(args: argparse.Namespace) -> int:
    from pipeline.api import restore

    sets = list(args.sets)
    if args.scale is not None:
        sets.append(f"upscale.scale={args.scale}")
    config = load_config(args.preset, sets)
    config = _sequence_preset(config, args.output)
    config = apply_run_arguments(config, args)
    if args.reference_photos is not None:
        config = replace(config, people=replace(config.people, reference=args.reference_photos))
    if config.prior.model is None:
        print(NO_MODEL_LINE, file=sys.stderr)
    report = restore(args.input, args.output, config, overwrite=args.overwrite)
    fps = report.frames / max(report.seconds.get("total", 0.0), 1e-9)
    print(
        f"{report.output}: {face_sentence(report)} in {report.seconds.get('total', 0.0):.1f}s "
        f"({fps:.1f} frames/s); report: {report.html_path or report.report_path}"
    )
    if report.random_generator:
        print("NOTE: the face prior was a seeded random TEST generator: the pasted 'faces' are not faces.")
    if report.restored:
        print(INVENTED_DETAIL_NOTICE)
    return 0


def _sequence_preset(config: Config, output: Path) -> Config:
    """`-o out_%06d.tiff` writes numbered image files: the preset is the one of the suffix (#15)."""
    import logging

    if not is_sequence_output(output):
        return config
    wanted = SEQUENCE_PRESETS[output.suffix.lower()]
    if config.io.preset != wanted:
        logging.getLogger(__name__).info(
            "%s: image-sequence output, written with io.preset=%s", output, wanted
        )
        config = replace(config, io=replace(config.io, preset=wanted))
    return config
