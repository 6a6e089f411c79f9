#!/usr/bin/env python
"""Speed of whole-frame film cleaning: frames per second per core, per stage, at SD and 1080p.

Each stage runs alone (and the newsreel preset's stages together) on one thread (OpenCV and torch
pinned to one), over a clip of a real photograph panned and zoomed with grain, specks, flicker,
weave and a scratch added. FFmpeg's own temporal filters (through PyAV's filter graph, one thread)
are timed alongside for reference. The figure is frames handed out ÷ CPU seconds of this process
(one thread: per core, and fair on a shared machine); the first frames (windows filling) are
included. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import FilmConfig, load_config
from pipeline.film import synthetic as S
from pipeline.film.clean import clean_frames

STAGES = {
    "deflicker": {"deflicker": True},
    "weave": {"weave": True},
    "dust": {"dust": True},
    "scratches": {"scratches": True},
    "grain_reduce": {"grain": "reduce"},
    "grain_regrain": {"grain": "regrain"},
    "line_denoise": {"line_denoise": 6.0},
}


def clip(size: tuple[int, int], frames: int) -> list[np.ndarray]:
    import skimage.data

    clean = S.pan_zoom(skimage.data.astronaut(), size, frames)
    bad, _ = S.add_flicker(clean, 0.08, 1)
    bad, _ = S.add_specks(bad, 10, 2)
    bad, _ = S.add_weave(bad, 1.5, 3)
    return S.add_grain(S.add_scratches(bad, [size[0] // 3]), 6.0, 4)


def fps(images: list[np.ndarray], film: FilmConfig) -> float:
    t = time.process_time()
    n = sum(1 for _ in clean_frames(S.as_frames(images), film, start=0, end=len(images)))
    return n / (time.process_time() - t)


def ffmpeg_fps(images: list[np.ndarray], name: str, args: str) -> float:
    import av

    h, w = images[0].shape[:2]
    graph = av.filter.Graph()
    src = graph.add("buffer", video_size=f"{w}x{h}", pix_fmt="rgb24", time_base="1/25", pixel_aspect="1/1")
    filt = graph.add(name, args)
    sink = graph.add("buffersink")
    src.link_to(filt)
    filt.link_to(sink)
    graph.configure(auto_buffer=True, force=True)
    frames = [av.VideoFrame.from_ndarray(im, format="rgb24") for im in images]
    for i, f in enumerate(frames):
        f.pts = i
    t = time.process_time()
    n = 0
    for f in [*frames, None]:  # None: the end, which flushes what the filters hold
        graph.push(f)
        while True:
            try:
                graph.pull()
                n += 1
            except (av.BlockingIOError, av.EOFError):
                break
    return n / (time.process_time() - t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (SD; 1080p gets half)")
    parser.add_argument("--sizes", default="720x576,1920x1080")
    args = parser.parse_args(argv)
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    newsreel = load_config(["newsreel"]).film
    results: dict[str, dict[str, float]] = {}
    for spec in args.sizes.split(","):
        w, h = (int(v) for v in spec.split("x"))
        n = args.frames if h <= 576 else max(8, args.frames // 2)
        images = clip((w, h), n)
        row: dict[str, float] = {}
        for name, settings in STAGES.items():
            row[name] = fps(images, replace(FilmConfig(), **settings))
        row["newsreel_all"] = fps(images, newsreel)
        for name, fargs in (
            ("ffmpeg_atadenoise", ""),
            ("ffmpeg_tmedian", "radius=2"),
            ("ffmpeg_deflicker", ""),
        ):
            row[name] = ffmpeg_fps(images, name.removeprefix("ffmpeg_"), fargs)
        results[spec] = row
        print(spec, "  ".join(f"{k} {v:.2f}" for k, v in row.items()), "frames/s per core", flush=True)
    print(json.dumps({"frames_per_s_per_core": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
