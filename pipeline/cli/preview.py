"""`reel preview IN [-o OUT] [--at TIME] [--seconds N]`: a few seconds restored, side by side.

What users check before they commit hours: the same options as `restore`, run in-process on a short
excerpt, written as a before/after clip (the source scaled to the output's size on the left, the
restored frames on the right) and a still of its middle frame (`OUT` with `.png`).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from pipeline.cli import add_run_arguments, apply_run_arguments, whole_factor
from pipeline.config import load_config
from pipeline.errors import ConfigError, EncodeError, OutputError
from pipeline.io.probe import probe
from pipeline.run.join import face_sentence
from pipeline.run.preflight import output_preset

HELP = "restore a few seconds with the same options and write a side-by-side before/after clip and a still"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file to preview")
    parser.add_argument("-o", "--output", type=Path, help="before/after clip (default: INPUT.preview.mp4)")
    parser.add_argument(
        "--at", type=float, default=None, metavar="SECONDS", help="where to start (default: the middle)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long (default 3)")
    parser.add_argument(
        "--scale", type=whole_factor("--scale"), help="upscale factor (overrides upscale.scale)"
    )
    parser.add_argument("--model", metavar="PATH_OR_NAME", help="face prior, as for `reel restore`")
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.api import restore
    from pipeline.io.mux import check_output

    output = args.output or args.input.with_name(args.input.name + ".preview.mp4")
    still = output.with_suffix(".png")
    if output.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise OutputError(output, "a preview is a .mp4, .mkv or .mov clip")
    check_output(output, overwrite=args.overwrite)
    if still.exists() and not args.overwrite:
        raise OutputError(still, "already exists (use --overwrite to replace it)")
    if args.seconds <= 0:
        raise ConfigError(f"--seconds {args.seconds:g}: must be more than 0")
    sets = list(args.sets) + ([f"upscale.scale={args.scale}"] if args.scale is not None else [])
    config = apply_run_arguments(load_config(args.preset, sets), args)
    if args.executor is None:  # a few seconds: in-process, no Ray start-up
        config = replace(config, run=replace(config.run, executor="local"))
    duration = float(probe(args.input).duration or 0.0)
    start = max(0.0, duration / 2 - args.seconds / 2) if args.at is None else args.at
    if duration and start >= duration:
        raise ConfigError(f"--at {start:g}: {args.input} is only {duration:.2f} s long")
    suffix = output_preset(config, output).suffixes[0]
    with tempfile.TemporaryDirectory(prefix=".reel-preview-", dir=output.parent) as tmp:
        excerpt = Path(tmp) / "excerpt.mkv"
        _cut(args.input, excerpt, start, args.seconds)
        report = restore(excerpt, Path(tmp) / f"restored{suffix}", config)
        _side_by_side(excerpt, report.output, Path(tmp) / f"preview{output.suffix}", Path(tmp) / "still.png")
        (Path(tmp) / f"preview{output.suffix}").replace(output)
        (Path(tmp) / "still.png").replace(still)
    print(f"{output}: {start:.2f}–{start + args.seconds:.2f} s, before | after; {face_sentence(report)}")
    print(f"still: {still}")
    return 0


def _ffmpeg(cmd: list[str], output: Path) -> None:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *cmd],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EncodeError(output, f"ffmpeg failed: {last}")


def _cut(source: Path, excerpt: Path, start: float, seconds: float) -> None:
    """The excerpt, frame-accurate (decoded, lossless FFV1; audio as FLAC)."""
    _ffmpeg(
        [
            "-ss",
            f"{start:.6f}",
            "-i",
            str(source),
            "-t",
            f"{seconds:.6f}",
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-c:v",
            "ffv1",
            "-c:a",
            "flac",
            str(excerpt),
        ],
        source,
    )


def _side_by_side(before: Path, after: Path, clip: Path, still: Path) -> None:
    """Source (scaled to the restored size, nearest pixels: what the footage really holds) | restored."""

    video = probe(after).video
    w, h = video.width, video.height
    graph = f"[0:v]scale={w}:{h}:flags=neighbor,setsar=1[a];[1:v]setsar=1[b];[a][b]hstack=inputs=2[v]"
    codec: list[str] = ["-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv420p"]
    _ffmpeg(
        [
            "-i",
            str(before),
            "-i",
            str(after),
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-map",
            "1:a:0?",
            *codec,
            "-c:a",
            "aac",
            str(clip),
        ],
        clip,
    )
    frames = int(video.frame_count or 1)
    _ffmpeg(["-i", str(clip), "-vf", f"select=eq(n\\,{frames // 2})", "-frames:v", "1", str(still)], still)
