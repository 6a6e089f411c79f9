"""Benchmark: `reel restore --scale 1` (decode → encode → mux) against plain ffmpeg.

Both encode the same generated 1080p clip with the same x264 settings (the delivery preset:
`-preset medium -crf 18`, yuv420p) and copy its audio, on this machine, in this run; the runs
alternate so that a load change on a shared machine hits both. At --scale 1 with no face model,
restore hands decoded frames to the encoder untouched (no RGB round trip): the figure measures the
pipeline's own overhead (frame index, probe, pipe to ffmpeg, join and mux). Prints each wall time, frames/s
and the ratio restore / ffmpeg (goal: at most 1.3).

    .venv/bin/python scripts/bench_io.py [--seconds 8] [--size 1920x1080] [--repeat 2]
    .venv/bin/python scripts/bench_io.py --scale 2 --size 960x540     # the RGB path
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_clip(path: Path, size: str, seconds: float, rate: str) -> None:
    """A 1080p H.264 clip with AAC audio, like a typical transfer handed to the pipeline."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run([*cmd, str(path)], check=True)


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and everything it ran)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--rate", default="25")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating")
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="1 (the goal's figure) or more: then frames take restore's RGB path (decode to RGB, Lanczos "
        "upscale with OpenCV, back to YUV), against ffmpeg's own Lanczos scaler",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="restore's executor: local = the single-process decode/encode path (the figure to report); "
        "ray adds Ray start-up and runs the encode in Ray workers (their CPU is not counted)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_io_") as tmp:
        d = Path(tmp)
        src = d / "in.mp4"
        make_clip(src, args.size, args.seconds, args.rate)
        frames = round(args.seconds * float(eval_rate(args.rate)))
        ffmpeg_cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src)]
        if args.scale != 1:
            # The same resampler restore uses (Lanczos), in ffmpeg's own scaler.
            ffmpeg_cmd += ["-vf", f"scale=iw*{args.scale}:ih*{args.scale}:flags=lanczos"]
        ffmpeg_cmd += ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"]
        ffmpeg_cmd += ["-c:a", "copy", str(d / "ffmpeg.mp4")]
        reel_cmd = [sys.executable, "-m", "pipeline", "restore", str(src), "-o", str(d / "reel.mp4")]
        reel_cmd += ["--scale", str(args.scale), "--preset", "delivery", "--overwrite"]
        reel_cmd += ["--executor", args.executor]

        wall: dict[str, list[float]] = {"ffmpeg": [], "restore": []}
        cpu: dict[str, list[float]] = {"ffmpeg": [], "restore": []}
        for i in range(args.repeat):
            for name, cmd in (("ffmpeg", ffmpeg_cmd), ("restore", reel_cmd)):
                w, c = timed(cmd)
                wall[name].append(w)
                cpu[name].append(c)
            print(
                f"run {i + 1}: ffmpeg {wall['ffmpeg'][-1]:.2f}s wall {cpu['ffmpeg'][-1]:.2f}s cpu, "
                f"restore {wall['restore'][-1]:.2f}s wall {cpu['restore'][-1]:.2f}s cpu",
                flush=True,
            )
        load = os.getloadavg()[0]
        print(
            f"clip: {args.size} @ {args.rate} fps, {frames} frames, scale {args.scale}, "
            "x264 medium crf 18, audio copied"
        )
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end")
        for name in ("ffmpeg", "restore"):
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            print(f"{name:8s} median {w:.2f}s wall ({frames / w:.1f} frames/s), {c:.2f}s cpu")
        wall_ratio = statistics.median(wall["restore"]) / statistics.median(wall["ffmpeg"])
        cpu_ratio = statistics.median(cpu["restore"]) / statistics.median(cpu["ffmpeg"])
        print(f"ratio restore/ffmpeg: wall {wall_ratio:.2f}x, cpu {cpu_ratio:.2f}x (goal <= 1.30x)")
        print("(on a shared, loaded machine the CPU ratio is the steadier figure)")
    return 0


def eval_rate(rate: str) -> float:
    from fractions import Fraction

    return float(Fraction(rate))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
