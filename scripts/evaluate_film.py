#!/usr/bin/env python
"""Evaluate whole-frame film cleaning on real pixels, beside FFmpeg's own filters.

Clips: real photographs that ship inside skimage (astronaut, coffee, rocket, chelsea) filmed by a
simulated camera (pipeline.film.synthetic.camera_clip): a pan with a handheld sway at sub-pixel
positions, light changing smoothly by ±8 % over the clip (chelsea: a fade of ±30 %; the full run adds
a light switched on half way, +30 %), and an object (a piece of another photograph) crossing the
picture. Nothing in them is a film defect. Settings: the newsreel
preset's film section.

Do no harm (issue 19 item 3): each clean clip cleaned, against its source (worst frame):
  shift_px <= 1.5   brightness <= 0.03   block_levels <= 20 (16 x 16 block mean abs diff)   psnr_min >= 30
Defects removed (item 2): flicker ±12 % (per channel, with noise), 15 specks a frame, a vertical
scratch, all added to the clean clip; the cleaned clip against the clean one:
  flicker_left <= 0.2   specks_left <= 0.1   scratch_left <= 0.2   psnr_gain_db >= 5
Gate jitter (up to ±2 px a frame) added alone: the mean shift of a frame against the clean one
before and after (jitter_added_px, jitter_left_px; the camera's own path must stay).
What is left of the specks is broken down (ours): by whether the cleaner filled them, by size, by
contrast, and by where (the clip's first or last frame, on the moving object, elsewhere).
FFmpeg's `deflicker`, `hqdn3d` and `tmedian` run on the same clips in the same run (raw RGB piped
through the ffmpeg binary) and are measured the same way. Speed: frames cleaned per second of wall
time (shared 2-core CPU). The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import load_config
from pipeline.film import measure as M
from pipeline.film import synthetic as S
from pipeline.film.clean import clean_frames
from pipeline.types import VideoFrame

_CLONE = "tpad=start=1:stop=1:start_mode=clone:stop_mode=clone,"  # tmedian drops a frame at each end
FFMPEG = {
    "ffmpeg deflicker": "deflicker=size=5",
    "ffmpeg hqdn3d": "hqdn3d",
    "ffmpeg tmedian": _CLONE + "tmedian",
}
GOALS = {"flicker_left": 0.2, "specks_left": 0.1, "scratch_left": 0.2}
HARM_GOALS = {"shift_px": 1.5, "brightness": 0.03, "block_levels": 20.0}


def _clip_specs(
    size: tuple[int, int], quick: bool
) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]]:
    """{clip: (photograph, the object crossing it, camera_clip's settings)}."""
    import cv2
    import skimage.data as sd

    def piece(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        y0, y1, x0, x1 = box
        return np.asarray(cv2.resize(image[y0:y1, x0:x1], (size[0] // 4, size[1] // 4), cv2.INTER_AREA))

    cat = piece(sd.chelsea(), (60, 180, 120, 300))
    face = piece(sd.astronaut(), (20, 200, 150, 330))
    specs = {
        "astronaut": (sd.astronaut(), cat, {}),
        "coffee": (sd.coffee(), face, {"pan_px": 1.0, "sway_px": 3.0}),
        "rocket": (sd.rocket(), cat, {"pan_px": 3.0, "sprite_px": 8.0}),
        "fade": (sd.chelsea(), face, {"pan_px": 0.5, "light": 0.3}),
    }
    if not quick:
        specs["switch"] = (sd.astronaut(), cat, {"light": 0.0, "switch": 0.3})
    return specs


def photo_clips(size: tuple[int, int], frames: int, quick: bool) -> dict[str, list[np.ndarray]]:
    return {
        name: S.camera_clip(photo, size, frames, sprite=sprite, **kw)
        for name, (photo, sprite, kw) in _clip_specs(size, quick).items()
    }


def object_masks(size: tuple[int, int], frames: int, quick: bool) -> dict[str, list[np.ndarray]]:
    """{clip: [frames] [H, W] bool where the crossing object is}: the clip against itself without it."""
    out = {}
    for name, (photo, sprite, kw) in _clip_specs(size, quick).items():
        a, b = (
            S.camera_clip(photo, size, frames, sprite=sprite, **kw),
            S.camera_clip(photo, size, frames, **kw),
        )
        out[name] = [np.abs(x.astype(np.int16) - y).max(axis=2) > 8 for x, y in zip(a, b, strict=True)]
    return out


def newsreel_frames(images: list[np.ndarray]) -> tuple[list[VideoFrame], float]:
    """(the clip's frames through the newsreel preset's film cleaning, frames per second)."""
    cfg = load_config(["newsreel"])
    t0 = time.perf_counter()
    out = list(clean_frames(S.as_frames(images), cfg, start=0, end=len(images)))
    return out, len(images) / max(time.perf_counter() - t0, 1e-9)


def newsreel(images: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """(the clip through the newsreel preset's film cleaning, frames per second)."""
    frames, fps = newsreel_frames(images)
    return [f.image for f in frames], fps


def ffmpeg(images: list[np.ndarray], vf: str) -> tuple[list[np.ndarray], float]:
    """(the clip through an FFmpeg filter, raw RGB in and out, frames per second)."""
    h, w = images[0].shape[:2]
    exe = shutil.which("ffmpeg") or "ffmpeg"
    cmd = [exe, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "25"]
    cmd += ["-i", "-", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    t0 = time.perf_counter()
    raw = subprocess.run(cmd, input=np.stack(images).tobytes(), capture_output=True, check=True).stdout
    fps = len(images) / max(time.perf_counter() - t0, 1e-9)
    out = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    return list(out[: len(images)]), fps


def with_defects(
    clean: list[np.ndarray], seed: int
) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], list[S.Speck]]:
    """(the clip with flicker, specks and a scratch added, {defect: [H, W] bool masks where added},
    the specks)."""
    shape, n = clean[0].shape[:2], len(clean)
    xs = [int(clean[0].shape[1] * 0.37)]
    bad, _ = S.add_flicker(clean, 0.12, seed=seed)
    bad, specks = S.add_specks(bad, 15, seed=seed + 1)
    bad = S.add_scratches(bad, xs)
    masks = {"specks": M.speck_masks(specks, shape, n), "scratch": M.scratch_masks(xs, shape, n)}
    return bad, masks, specks


def defect_figures(
    out: list[np.ndarray], bad: list[np.ndarray], clean: list[np.ndarray], masks: dict[str, list[np.ndarray]]
) -> dict[str, float]:
    ps = lambda clip: M.psnr(np.stack(clip), np.stack(clean))  # noqa: E731
    return {
        "flicker_left": M.flicker_left(out, bad, clean),
        "specks_left": M.error_left(out, bad, clean, masks["specks"]),
        "scratch_left": M.error_left(out, bad, clean, masks["scratch"]),
        "psnr_gain_db": ps(out) - ps(bad),
    }


def jitter_figures(clean: list[np.ndarray], seed: int) -> dict[str, float]:
    """Gate jitter of up to ±2 px (x and y, each frame) added to the clean clip: the mean shift of a
    frame against the clean one before and after the newsreel cleaning (px)."""
    bad, _ = S.add_weave(clean, 2.0, seed=seed)
    out, _ = newsreel(bad)
    shift = lambda clip: float(np.mean([M.frame_shift(a, b) for a, b in zip(clip, clean, strict=True)]))  # noqa: E731
    return {"jitter_added_px": shift(bad), "jitter_left_px": shift(out)}


def local_figures(fn: Any, clean: list[np.ndarray], seed: int) -> dict[str, float]:
    """Local flicker alone (gains varying smoothly across the frame, log std ~6 % at the corners):
    what is left of its spread across the frame (pipeline.film.measure.local_flicker_left)."""
    bad = S.add_local_flicker(clean, 0.06, seed=seed + 7)
    out, _ = fn(bad)
    return {"local_flicker_left": M.local_flicker_left(out, bad, clean)}


def _defects_fixed(
    method: str, fn: Any, bad: list[np.ndarray]
) -> tuple[list[np.ndarray], float, list[np.ndarray | None]]:
    """(the defective clip through `method`, frames per second, the pixels it says it filled: ours only)."""
    if method != "reel newsreel":
        fixed, fps = fn(bad)
        return fixed, fps, [None] * len(bad)
    frames, fps = newsreel_frames(bad)
    return [f.image for f in frames], fps, [f.filled for f in frames]


def evaluate(
    clips: dict[str, list[np.ndarray]], seed: int, objects: dict[str, list[np.ndarray]]
) -> tuple[dict[str, dict[str, dict[str, float]]], list[dict[str, float]]]:
    """({method: {clip: figures}}: the do-no-harm figures (on the clean clip) and the defect figures;
    one row per added speck, ours, for the breakdown of what is left (measure.speck_rows))."""
    methods = {
        "reel newsreel": newsreel,
        **{k: (lambda im, vf=vf: ffmpeg(im, vf)) for k, vf in FFMPEG.items()},
    }
    rows: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    specks_rows: list[dict[str, float]] = []
    for name, clean in clips.items():
        bad, masks, specks = with_defects(clean, seed)
        for method, fn in methods.items():
            kept, _ = fn(clean)
            fixed, fps, filled = _defects_fixed(method, fn, bad)
            jitter = {}
            if method == "reel newsreel":
                jitter = jitter_figures(clean, seed)
                specks_rows += M.speck_rows(fixed, bad, clean, specks, filled, objects[name])
            rows[method][name] = {
                **dict.fromkeys(("jitter_added_px", "jitter_left_px"), float("nan")),
                **jitter,
                **M.harm(kept, clean),
                **defect_figures(fixed, bad, clean, masks),
                **local_figures(fn, clean, seed),
                "fps": fps,
            }
    return rows, specks_rows


def breakdown_table(groups: dict[str, dict[str, float]]) -> list[str]:
    """The specks left by ours, by group: how many, the share of their error left, their part of all
    that is left (the groups of each block add up to 1)."""
    lines = [f"specks left by reel newsreel {'group':30s} {'n':>6s} {'left':>8s} {'share':>8s}"]
    lines += [f"{'':29s}{k:30s} {v['n']:6.0f} {v['left']:8.3f} {v['share']:8.3f}" for k, v in groups.items()]
    return lines


def table(rows: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    keys = ["shift_px", "brightness", "block_levels", "psnr_min", "flicker_left", "specks_left"]
    keys += ["scratch_left", "psnr_gain_db", "local_flicker_left", "jitter_added_px", "jitter_left_px", "fps"]
    lines = [f"{'method':17s} {'clip':10s} " + " ".join(f"{k:>12s}" for k in keys)]
    for method, per_clip in rows.items():
        for clip, m in per_clip.items():
            lines.append(f"{method:17s} {clip:10s} " + " ".join(f"{m[k]:12.3f}" for k in keys))
    return lines


def summary(rows: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float | bool | None]]:
    """Per method: the worst do-no-harm figures over clips, the mean defect figures, whether it meets
    the issue's goals."""
    out: dict[str, dict[str, float | bool | None]] = {}
    for method, per_clip in rows.items():
        ms = list(per_clip.values())
        s: dict[str, float | bool] = {k: max(m[k] for m in ms) for k in HARM_GOALS}
        s["psnr_min"] = min(m["psnr_min"] for m in ms)
        means = [*GOALS, "psnr_gain_db", "local_flicker_left", "jitter_added_px", "jitter_left_px", "fps"]
        s.update({k: float(np.mean([m[k] for m in ms])) for k in means})
        s["no_harm"] = all(float(s[k]) <= v for k, v in HARM_GOALS.items()) and float(s["psnr_min"]) >= 30
        s["defects_goal"] = all(float(s[k]) <= v for k, v in GOALS.items()) and float(s["psnr_gain_db"]) >= 5
        out[method] = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in s.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller clips, no light switch (< 3 min)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    size, frames = ((320, 200), 48) if args.quick else ((512, 320), 75)
    t0 = time.time()
    clips = photo_clips(size, frames, args.quick)
    rows, specks = evaluate(clips, args.seed, object_masks(size, frames, args.quick))
    groups = M.speck_breakdown(specks)
    print("\n".join(table(rows) + breakdown_table(groups)))
    result = {"quick": args.quick, "size": list(size), "frames": frames, "methods": summary(rows)}
    result["specks_breakdown"] = {k: {m: round(x, 4) for m, x in v.items()} for k, v in groups.items()}
    result["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
