#!/usr/bin/env python
"""Evaluate whole-frame film cleaning where the answer is known: clean clips, known defects added.

Settings: the newsreel preset's. Clean clips: real photographs (skimage.data astronaut, coffee,
chelsea) panned and zoomed, and FFmpeg lavfi sources (testsrc2, mandelbrot) decoded with PyAV.
Each defect is added alone, the clip is
restored with only the matching stage on, and compared with the clean clip:

  psnr_in / psnr_out   PSNR of the degraded / restored clip to the clean one (dB), and the gain
  flicker_residual     frame-to-frame variation of the frame-mean error left ÷ what was added
                       (std of its first differences, mean over channels; goal <= 0.1)
  specks_removed       fraction of visible specks (mean added error >= 10 levels) whose error is at
                       least cut to a third, frames with both neighbours only (goal >= 0.9)
  false_fills          blobs filled per frame in clips with no specks: fast motion (a small square at
                       12 and 24 px a frame, a fast pan and zoom) and a slow pan over fine texture (goal ~ 0)
  weave_residual_px    mean distance between each restored frame's position and the clean one's
                       (phase correlation), against the weave added
  grain                PSNR gain of "reduce"; regrain: the grain std put back ÷ the grain added

Temporal stages need neighbours: the first and last `context` frames are left out of every figure.
The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import FilmConfig, load_config
from pipeline.film import synthetic as S
from pipeline.film.clean import CleanStats, clean_frames, context

# testsrc2's picture itself moves in jerks (about 4 px every other frame): a stabiliser rightly takes
# that for weave, so its weave row is printed but left out of the summary.
JERKY = {"testsrc2"}


def restore(images: list[np.ndarray], film: FilmConfig) -> tuple[list[np.ndarray], CleanStats]:
    it = clean_frames(S.as_frames(images), film, start=0, end=len(images))
    return [f.image for f in it], it.stats


def lavfi_clip(source: str, size: tuple[int, int], frames: int, tmp: Path) -> list[np.ndarray]:
    """Frames of an FFmpeg lavfi source, coded losslessly and decoded with PyAV."""
    import av

    path = tmp / f"{source}.mkv"
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    cmd = [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"{source}=size={size[0]}x{size[1]}:rate=25"]
    cmd += ["-frames:v", str(frames), "-c:v", "ffv1", "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(cmd, check=True)
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def clips(size: tuple[int, int], frames: int, tmp: Path, quick: bool) -> dict[str, list[np.ndarray]]:
    import skimage.data as sd

    out = {
        "astronaut": S.pan_zoom(sd.astronaut(), size, frames),
        "coffee": S.pan_zoom(sd.coffee(), size, frames),
    }
    if not quick:
        out["chelsea"] = S.pan_zoom(sd.chelsea(), size, frames)
        out["mandelbrot"] = lavfi_clip("mandelbrot", size, frames, tmp)
    out["testsrc2"] = lavfi_clip("testsrc2", size, frames, tmp)
    return out


def _psnr(a: list[np.ndarray], b: list[np.ndarray], lo: int, hi: int) -> float:
    return S.psnr(np.stack(a[lo:hi]), np.stack(b[lo:hi]))


def _means(images: list[np.ndarray]) -> np.ndarray:
    return np.array([im.reshape(-1, 3).mean(axis=0) for im in images])  # [n, 3]


def eval_flicker(clean: list[np.ndarray], film: FilmConfig, seed: int) -> dict[str, float]:
    bad, _ = S.add_flicker(clean, 0.12, seed)
    f = replace(film, deflicker=True)
    out, stats = restore(bad, f)
    r = f.deflicker_radius
    lo, hi = r, len(clean) - r
    added = np.diff(_means(bad[lo:hi]) - _means(clean[lo:hi]), axis=0).std(axis=0)
    left = np.diff(_means(out[lo:hi]) - _means(clean[lo:hi]), axis=0).std(axis=0)
    return {
        "psnr_in": _psnr(bad, clean, lo, hi),
        "psnr_out": _psnr(out, clean, lo, hi),
        "flicker_residual": float(np.mean(left / np.maximum(added, 1e-9))),
        "frames_deflickered": stats.deflickered,
    }


def _speck_recall(
    clean: list[np.ndarray], bad: list[np.ndarray], out: list[np.ndarray], specks: list
) -> float:
    visible = removed = 0
    for s in specks:
        if s.frame in (0, len(clean) - 1):
            continue  # no neighbour on one side
        r = int(np.ceil(s.radius))
        sl = (slice(max(0, s.y - r), s.y + r + 1), slice(max(0, s.x - r), s.x + r + 1))
        c, d, o = (x[s.frame][sl].astype(np.float64) for x in (clean, bad, out))
        added = float(np.abs(d - c).mean())
        if added < 10:
            continue
        visible += 1
        removed += float(np.abs(o - c).mean()) <= added / 3
    return removed / max(1, visible)


def eval_dust(clean: list[np.ndarray], film: FilmConfig, seed: int) -> dict[str, float]:
    bad, specks = S.add_specks(clean, 8, seed)
    out, stats = restore(bad, replace(film, dust=True))
    lo, hi = 1, len(clean) - 1
    return {
        "psnr_in": _psnr(bad, clean, lo, hi),
        "psnr_out": _psnr(out, clean, lo, hi),
        "specks_removed": _speck_recall(clean, bad, out, specks),
        "specks_added": len(specks),
        "specks_filled": stats.specks_filled,
    }


def eval_false_fills(clip: list[np.ndarray], film: FilmConfig) -> dict[str, float]:
    out, stats = restore(clip, replace(film, dust=True))
    changed = float(np.mean([np.any(o != c, axis=2).mean() for o, c in zip(out, clip, strict=True)]))
    return {
        "false_fills_per_frame": stats.specks_filled / len(clip),
        "changed_px_fraction": changed,
        "psnr_out": _psnr(out, clip, 0, len(clip)),
        "objects_kept": stats.objects_kept,
    }


def eval_scratches(clean: list[np.ndarray], film: FilmConfig) -> dict[str, float]:
    w = clean[0].shape[1]
    xs = [w // 5, w // 2 + 7, (4 * w) // 5]
    bad = S.add_scratches(clean, xs)
    out, stats = restore(bad, replace(film, scratches=True))
    n = len(clean)
    return {
        "psnr_in": _psnr(bad, clean, 0, n),
        "psnr_out": _psnr(out, clean, 0, n),
        "scratches_added": len(xs) * n,
        "scratches_found": stats.scratches_found,
    }


def _positions(images: list[np.ndarray], refs: list[np.ndarray]) -> np.ndarray:
    import cv2

    out = []
    for im, ref in zip(images, refs, strict=True):
        a = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(np.float32)
        b = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)
        win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(a, b, win)
        out.append((dx, dy))
    return np.array(out)  # [n, 2] position of each frame relative to the clean one


def eval_weave(clean: list[np.ndarray], film: FilmConfig, seed: int) -> dict[str, float]:
    bad, _ = S.add_weave(clean, 2.0, seed)
    f = replace(film, weave=True)
    out, stats = restore(bad, f)
    r = f.weave_radius
    lo, hi = r, len(clean) - r
    added = _positions(bad[lo:hi], clean[lo:hi])
    left = _positions(out[lo:hi], clean[lo:hi])
    left = left - left.mean(axis=0)  # a constant offset of the whole clip is not weave
    return {
        "psnr_in": _psnr(bad, clean, lo, hi),
        "psnr_out": _psnr(out, clean, lo, hi),
        "weave_added_px": float(np.hypot(*(added - added.mean(axis=0)).T).mean()),
        "weave_residual_px": float(np.hypot(*left.T).mean()),
        "weave_px_mean": stats.as_dict()["weave_px_mean"],
    }


def eval_grain(clean: list[np.ndarray], film: FilmConfig, seed: int) -> dict[str, float]:
    sigma = 8.0
    bad = S.add_grain(clean, sigma, seed)
    f = replace(film, grain="reduce")
    out, stats = restore(bad, f)
    re, _ = restore(bad, replace(f, grain="regrain"))
    r = f.grain_radius
    lo, hi = r, len(clean) - r
    put_back = float(np.std(np.stack(re[lo:hi]).astype(np.float64) - np.stack(out[lo:hi])))
    return {
        "psnr_in": _psnr(bad, clean, lo, hi),
        "psnr_out": _psnr(out, clean, lo, hi),
        "grain_sigma_measured": stats.as_dict()["grain_sigma_mean"],
        "regrain_ratio": put_back / sigma,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small clips, fewer sources (< 3 min)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size, frames = ((256, 192), 40) if args.quick else ((512, 384), 60)
    # The newsreel preset's settings, every stage off; each evaluation turns its own stage on.
    off = {"deflicker": False, "weave": False, "dust": False, "scratches": False, "grain": "keep"}
    film = replace(load_config(["newsreel"]).film, **off)
    t0 = time.time()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = clips(size, frames, Path(tmp), args.quick)
        fast = {
            "square_12px": S.moving_square(size, frames, speed=12.0),
            "square_24px": S.moving_square(size, frames, speed=24.0, side=16),
            "astronaut_8px": S.pan_zoom(skimage.data.astronaut(), size, frames, pan_px=8.0, zoom=0.004),
            "coffee_clean": sources["coffee"],
        }
    for name, clip in sources.items():
        rows[name] = {
            "flicker": eval_flicker(clip, film, args.seed),
            "dust": eval_dust(clip, film, args.seed),
            "scratches": eval_scratches(clip, film),
            "weave": eval_weave(clip, film, args.seed),
            "grain": eval_grain(clip, film, args.seed),
        }
        for defect, m in rows[name].items():
            gain = m["psnr_out"] - m["psnr_in"]
            extra = ", ".join(f"{k} {v:.3g}" for k, v in m.items() if not k.startswith("psnr"))
            psnr = f"psnr {m['psnr_in']:5.2f} -> {m['psnr_out']:5.2f} ({gain:+.2f} dB)"
            print(f"{name:11s} {defect:9s} {psnr}  {extra}")
    false = {name: eval_false_fills(clip, film) for name, clip in fast.items()}
    for name, m in false.items():
        print(f"{name:11s} no specks: " + ", ".join(f"{k} {v:.3g}" for k, v in m.items()))

    def mean(defect: str, key: str) -> float:
        return float(
            np.mean([r[defect][key] for n, r in rows.items() if defect != "weave" or n not in JERKY])
        )

    summary = {
        "quick": args.quick,
        "size": list(size),
        "frames": frames,
        "context": list(context(replace(film, deflicker=True, weave=True, dust=True, grain="reduce"))),
        "psnr_gain_db": {d: mean(d, "psnr_out") - mean(d, "psnr_in") for d in next(iter(rows.values()))},
        "flicker_residual": mean("flicker", "flicker_residual"),
        "specks_removed": mean("dust", "specks_removed"),
        "false_fills_per_frame": float(np.mean([m["false_fills_per_frame"] for m in false.values()])),
        "false_fill_px_fraction": float(np.mean([m["changed_px_fraction"] for m in false.values()])),
        "weave_added_px": mean("weave", "weave_added_px"),
        "weave_residual_px": mean("weave", "weave_residual_px"),
        "regrain_ratio": mean("grain", "regrain_ratio"),
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
