"""Scan throughput (frames/s) on SD and 1080p footage, and end-to-end frames/s with a tiny generator.

Footage: scikit-image's astronaut composited into moving, cut, degraded clips
(pipeline.faces.synthetic), rendered at the benchmark size. Scan is measured two ways: on frames
already in memory (cuts + detection + tracking only), and from an encoded file (adding decode).
End to end runs `pipeline.run.restore.restore` (in-process) with a small seeded random generator
on an SD clip.

    .venv/bin/python scripts/bench_scan.py [--frames 48] [--detector yunet] [--skip-e2e]

CPU benchmark: it needs PyAV, ffmpeg and scikit-image (not for the GPU-only check machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.config import Config, ScanConfig, load_config
from pipeline.faces.scan import scan_frames
from pipeline.faces.synthetic import larger_faces, render, standard_shots, write_video

SIZES = {"SD": (720, 576), "1080p": (1920, 1080)}


def _clip(size: tuple[int, int], frames: int) -> list[np.ndarray]:
    """Three shots scaled to `frames`, faces scaled with the frame, rendered at 2× and reduced."""
    base = standard_shots()
    total = sum(s.length for s in base)
    k = size[0] / 1280  # standard_shots are laid out for a 1280-px-wide canvas
    shots = [
        replace(s, length=max(4, round(s.length * frames / total))) for s in larger_faces(base, k, x=k, y=k)
    ]
    return render(shots, size=size, factor=1, blur=0.6, grain=0.03).frames


def bench_scan(frames: list[np.ndarray], cfg: ScanConfig, path: Path | None) -> dict[str, float]:
    out: dict[str, float] = {}
    scan_frames(enumerate(frames[:4]), cfg)  # warm up (model load, OpenCV graph for this size)
    t = time.perf_counter()
    result = scan_frames(enumerate(frames), cfg)
    out["scan_fps_in_memory"] = len(frames) / (time.perf_counter() - t)
    out["tracks"] = len(result.tracks)
    if path is not None:
        from pipeline.run.steps import scan_whole as scan

        t = time.perf_counter()
        scan(path, replace(Config(), scan=cfg))
        out["scan_fps_with_decode"] = len(frames) / (time.perf_counter() - t)
    return out


def bench_e2e(path: Path, frames: int, resolution: int, workdir: Path) -> dict[str, float]:
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.load import RANDOM_SOURCE_PREFIX
    from pipeline.prior.stylegan2 import make_random_generator
    from pipeline.run.restore import restore

    model = workdir / "tiny.safetensors"
    G = make_random_generator(resolution, seed=0)
    save_generator(G, model, source=f"{RANDOM_SOURCE_PREFIX}: seed 0 (benchmark, not a face model)")
    cfg = load_config(
        sets=[
            f"prior.model={model}",
            f"run.workdir={workdir / 'work'}",
            "search.gaussian_samples=10000",
            "run.executor=local",
        ]
    )
    t = time.perf_counter()
    report = restore(path, workdir / "out.mkv", cfg)
    seconds = time.perf_counter() - t
    return {
        "e2e_fps": frames / seconds,
        "face_frames": report.face_frames,
        "face_frames_per_s": report.face_frames / seconds,
        **{f"seconds_{k}": v for k, v in report.seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--detector", default=ScanConfig().detector)
    parser.add_argument("--resolution", type=int, default=32, help="tiny generator resolution (e2e)")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = replace(ScanConfig(), detector=args.detector)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in SIZES.items():
            frames = _clip(size, args.frames)
            path = write_video(frames, Path(tmp) / f"{name}.mkv", audio=False)
            results[name] = bench_scan(frames, cfg, path)
            print(name, size, json.dumps({k: round(v, 2) for k, v in results[name].items()}), flush=True)
        if not args.skip_e2e:
            sd = Path(tmp) / "SD.mkv"
            results["e2e_SD"] = bench_e2e(sd, args.frames, args.resolution, Path(tmp))
            print("e2e SD", json.dumps({k: round(v, 2) for k, v in results["e2e_SD"].items()}), flush=True)


if __name__ == "__main__":
    main()
