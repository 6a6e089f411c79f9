#!/usr/bin/env python3
"""Benchmark the whole pipeline: frames decoded and cleaned per frame, small jobs, `--scale 1`.

    python scripts/bench_pipeline.py [--only decode,scale1,small] [--decode-frames 288]

decode: `restore --preset newsreel` with a seeded 16-px test generator (a face model's plan; its faces
  are not faces) on a synthetic clip of moving, cut, grainy faces at 640x360, in-process: frames/s
  and the report's "decode" section (frames decoded and film-cleaned per frame of the video, context
  frames included; goal <= 1.25 each). Set PYTHONPATH to an older tree to measure it the same way.
scale1: `reel restore --scale 1` under the default executor against plain ffmpeg (x264 medium,
  crf 18, yuv420p, audio copied, as scripts/bench_io.py) on a 20-s 720p clip: wall ratio (goal 1.3).
small: a 3-s 720p clip through `reel restore` under the default executor and with --executor local,
  each in its own process: wall ratio (goal 2).
Each command runs in its own process where it says so; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REEL = [sys.executable, "-m", "pipeline"]


def _machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_1min": load,
        "python": platform.python_version(),
    }


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def _clip(path: Path, size: str, seconds: float) -> Path:
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d={seconds}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run([*cmd, str(path)], check=True)
    return path


# ---------------------------------------------------------------------- decode


def _faces_clip(path: Path, frames: int) -> Path:
    from pipeline.faces.synthetic import render, standard_shots, write_video

    shots = standard_shots()
    per = frames // len(shots)
    lengths = [per] * (len(shots) - 1) + [frames - per * (len(shots) - 1)]
    shots = [replace(s, length=n) for s, n in zip(shots, lengths, strict=True)]
    return write_video(render(shots, size=(1280, 720), factor=2, seed=3).frames, path)


def _tiny_model(path: Path) -> Path:
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.load import RANDOM_SOURCE_PREFIX
    from pipeline.prior.stylegan2 import make_random_generator

    G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    return save_generator(G, path, source=f"{RANDOM_SOURCE_PREFIX}: seed 0, 16 px (benchmark generator)")


def bench_decode(d: Path, frames: int) -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.run.restore import restore

    src, model = _faces_clip(d / "faces.mkv", frames), _tiny_model(d / "tiny.safetensors")
    sets = [
        f"prior.model={model}",
        f"run.workdir={d / 'work'}",
        "run.executor=local",
        "run.progress=false",
        "run.device=cpu",
        "search.steps=4",
        "search.warm_steps=2",
        "search.gaussian_samples=2000",
        "compose.max_face_stretch=8",
        "report.spread_k=0",
    ]
    start = time.perf_counter()
    report = restore(src, d / "out.mkv", load_config(["newsreel"], sets))
    wall = time.perf_counter() - start
    body = json.loads(Path(report.report_path).read_text())
    decode = body.get("decode")  # absent in trees from before the counters
    return {
        "clip": f"640x360, {frames} frames, {body['totals']['face_frames']} face-frames",
        "frames_per_s": round(frames / wall, 2),
        "wall_s": round(wall, 1),
        "decode": decode,
        "seconds": body["seconds"],
    }


# ---------------------------------------------------------------------- scale 1 and small jobs


def bench_scale1(d: Path) -> dict[str, Any]:
    src = _clip(d / "in720.mp4", "1280x720", 20)
    ffmpeg = ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libx264", "-preset", "medium"]
    ffmpeg += ["-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "copy", str(d / "ffmpeg.mp4")]
    reel = [*REEL, "restore", str(src), "-o", str(d / "reel.mp4"), "--overwrite", "--scale", "1"]
    reel += ["--set", "run.progress=false", "--workdir", str(d / "w1")]
    walls = {"ffmpeg": _timed(ffmpeg), "restore": _timed(reel)}
    walls["ffmpeg"] = min(walls["ffmpeg"], _timed(ffmpeg))  # alternate: a load change hits both
    walls["restore"] = min(walls["restore"], _timed(reel))
    return {
        "clip": "1280x720, 20 s, 500 frames",
        "ffmpeg_s": round(walls["ffmpeg"], 2),
        "restore_default_s": round(walls["restore"], 2),
        "ratio": round(walls["restore"] / walls["ffmpeg"], 2),
    }


def bench_small(d: Path) -> dict[str, Any]:
    src = _clip(d / "in3s.mp4", "1280x720", 3)
    walls: dict[str, float] = {}
    for name, extra in (("default", []), ("local", ["--executor", "local"]), ("ray", ["--executor", "ray"])):
        cmd = [*REEL, "restore", str(src), "-o", str(d / f"{name}.mkv"), "--overwrite", *extra]
        cmd += ["--set", "run.progress=false", "--workdir", str(d / f"w-{name}")]
        walls[name] = _timed(cmd)
    return {
        "clip": "1280x720, 3 s, 75 frames, scale 2",
        **{f"{k}_s": round(v, 2) for k, v in walls.items()},
        "ratio_default_to_local": round(walls["default"] / walls["local"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default="decode,scale1,small", help="comma-separated: decode, scale1, small"
    )
    parser.add_argument(
        "--decode-frames", type=int, default=288, help="frames of the decode benchmark's clip"
    )
    args = parser.parse_args()
    out: dict[str, Any] = {"machine": _machine()}
    runs = {
        "decode": lambda d: bench_decode(d, args.decode_frames),
        "scale1": bench_scale1,
        "small": bench_small,
    }
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench_pipeline_{name}_") as tmp:
            out[name] = runs[name](Path(tmp))
        print(f"{name}: {json.dumps(out[name])}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
