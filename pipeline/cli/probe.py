"""`reel probe IN [--json] [--exact]`: what a video file holds, exactly."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from typing import Any

from pipeline.errors import ConfigError
from pipeline.io.probe import detect_interlacing, probe
from pipeline.io.sequence import set_sequence_rate
from pipeline.types import VideoInfo

HELP = "describe a video file: streams, exact frame rate and time base, colour, aspect, rotation, interlacing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", help="video file, image sequence pattern (scan_%%06d.dpx) or directory of images"
    )
    parser.add_argument(
        "--rate",
        default=None,
        metavar="FPS",
        help="frame rate of an image sequence (e.g. 24 or 24000/1001; default 24): scans carry none",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (fractions as 'num/den' strings)")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="count frames and list every timestamp by reading the whole stream, and check progressive "
        "frames for combing (slower)",
    )


def _plain(value: Any) -> Any:
    import dataclasses
    from pathlib import Path

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _seconds(value: Fraction | None) -> str:
    return "unknown" if value is None else f"{float(value):.3f} s"


def format_info(info: VideoInfo) -> str:
    """Human-readable summary of a VideoInfo."""
    v = info.video
    rate = "unknown" if v.frame_rate is None else f"{v.frame_rate} ({float(v.frame_rate):.3f} fps)"
    count = "unknown" if v.frame_count is None else str(v.frame_count)
    if info.frame_pts is None and v.frame_count is not None:
        count += " (container's claim; --exact counts)"
    colour = " / ".join(x or "unspecified" for x in (v.color.primaries, v.color.transfer, v.color.matrix))
    lines = [
        f"{info.path}",
        f"  container   {info.container}, duration {_seconds(info.duration)}",
        f"  video #{v.index}    {v.codec} {v.width}x{v.height} {v.pix_fmt} ({v.bit_depth}-bit)",
        f"  frame rate  {rate}{', variable' if v.variable_frame_rate else ''}",
        f"  frames      {count}",
        f"  time base   {v.time_base}, first pts {v.start_pts}",
        f"  aspect      SAR {v.sample_aspect_ratio}, DAR {v.display_aspect_ratio}",
        f"  colour      {colour}, range {v.color.range or 'unspecified'}",
        f"  rotation    {v.rotation}°",
        f"  scan        {'interlaced' if v.interlaced else 'progressive'} (field order {v.field_order})",
    ]
    for a in info.audio:
        layout = a.channel_layout or f"{a.channels} ch"
        lines.append(f"  audio #{a.index}    {a.codec} {a.sample_rate} Hz {layout} [{a.language or 'und'}]")
    for s in info.subtitles:
        lines.append(f"  subtitle #{s.index} {s.codec} [{s.language or 'und'}]")
    for key, value in info.metadata.items():
        lines.append(f"  tag         {key}={value}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:

    if args.rate is not None:
        try:
            rate = Fraction(args.rate)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(
                f"--rate {args.rate!r}: expected a frame rate such as 24 or 24000/1001"
            ) from None
        if rate <= 0:
            raise ConfigError(f"--rate {args.rate!r}: must be positive")
        set_sequence_rate(rate)

    info = probe(args.input, exact=args.exact)
    # What the container declares, against what --exact found: a truncated file says so.
    declared = probe(args.input).video.frame_count if args.exact else None
    present = info.video.frame_count
    if args.json:
        data = _plain(info)
        if args.exact:
            data["declared_frame_count"] = declared
        print(json.dumps(data, indent=2))
    else:
        print(format_info(info))
        if declared is not None and present is not None and abs(declared - present) > 1:
            print(
                f"  note        the container declares {declared} frames, {present} present "
                f"({'truncated or damaged' if present < declared else 'the header undercounts'})"
            )
        if args.exact and not info.video.interlaced:
            seen = detect_interlacing(args.input)
            if seen is not None:
                first = "top" if seen == "tt" else "bottom"
                print(
                    f"  note        flagged progressive, but the pictures look interlaced "
                    f"({first} field first)"
                )
    return 0
