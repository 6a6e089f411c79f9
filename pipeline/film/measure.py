"""What cleaning did to a clip whose clean source is known: the do-no-harm figures and the defect
figures used by the tests and `scripts/evaluate_film.py`.

Do no harm (a clean clip in, the cleaned clip out; each a per-clip worst case over frames):
    shift_px      the largest shift of a frame against its source (phase correlation, px)
    brightness    the largest |mean(out) / mean(source) - 1| of a frame
    block_levels  the largest mean absolute difference of a 16 x 16 block (8-bit levels)
    psnr_min      the lowest PSNR of a frame against its source (dB)
Defects (known defects added to a clean clip; each the share of what was added that is left):
    flicker_left  frame-to-frame variation of the log brightness error left / added (std of its
                  first differences, on luma)
    specks_left   absolute error left inside the specks / added there
    scratch_left  absolute error left in the scratch columns / added there
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipeline.film.torch_ops import is_tensor

if TYPE_CHECKING:
    from torch import Tensor

BLOCK = 16


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)).astype(np.float32)


def frame_shift(out: np.ndarray | Tensor, src: np.ndarray | Tensor) -> float:
    """How far (px) `out` is moved against `src` (phase correlation over the whole frame). Two [H, W, 3]
    uint8 tensors are measured on their device (pipeline.film.phase: the same figure, to 1e-4 px)."""
    import cv2

    if is_tensor(out) and is_tensor(src):
        from pipeline.film.phase import hanning, phase_correlate
        from pipeline.film.torch_ops import rgb8_to_gray8, to_numpy

        ta, tb = (rgb8_to_gray8(x).float() for x in (src, out))
        h, w = ta.shape
        d = to_numpy(phase_correlate(ta, tb, hanning(h, w, str(ta.device))))[0]
        return float(np.hypot(d[0], d[1]))
    a, b = _gray(np.asarray(src)), _gray(np.asarray(out))
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F))
    return float(np.hypot(dx, dy))


def worst_block(out: np.ndarray, src: np.ndarray) -> float:
    """The largest mean absolute difference (8-bit levels) of a whole 16 x 16 block."""
    h, w = (s - s % BLOCK for s in src.shape[:2])
    d = np.abs(out[:h, :w].astype(np.float32) - src[:h, :w].astype(np.float32)).mean(axis=2)
    return float(d.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3)).max())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def harm(out: Sequence[np.ndarray], src: Sequence[np.ndarray]) -> dict[str, float]:
    """The do-no-harm figures of a cleaned clip against its clean source (worst frame of each)."""
    ratio = [float(o.mean()) / max(float(s.mean()), 1e-6) for o, s in zip(out, src, strict=True)]
    return {
        "shift_px": max(frame_shift(o, s) for o, s in zip(out, src, strict=True)),
        "brightness": max(abs(r - 1.0) for r in ratio),
        "block_levels": max(worst_block(o, s) for o, s in zip(out, src, strict=True)),
        "psnr_min": min(psnr(o, s) for o, s in zip(out, src, strict=True)),
    }


def flicker_left(out: Sequence[np.ndarray], bad: Sequence[np.ndarray], clean: Sequence[np.ndarray]) -> float:
    """Frame-to-frame brightness variation left ÷ added (log luma means against the clean clip)."""
    lc = np.log([max(float(_gray(c).mean()), 1e-3) for c in clean])

    def pumping(clip: Sequence[np.ndarray]) -> float:
        err = np.log([max(float(_gray(c).mean()), 1e-3) for c in clip]) - lc
        return float(np.diff(err).std())

    return pumping(out) / max(pumping(bad), 1e-9)


def local_flicker_left(
    out: Sequence[np.ndarray], bad: Sequence[np.ndarray], clean: Sequence[np.ndarray], grid: int = 4
) -> float:
    """Brightness variation across the frame left ÷ added: per frame, the median log luma ratio to
    the clean frame in each cell of a `grid` x `grid` grid, less the frame's mean (global flicker
    is `flicker_left`'s), RMS over frames and cells."""

    def spread(clip: Sequence[np.ndarray]) -> float:
        errs = []
        for a, c in zip(clip, clean, strict=True):
            d = np.log(np.maximum(_gray(a), 1.0)) - np.log(np.maximum(_gray(c), 1.0))
            h, w = d.shape
            cells = [
                np.median(d[i * h // grid : (i + 1) * h // grid, j * w // grid : (j + 1) * w // grid])
                for i in range(grid)
                for j in range(grid)
            ]
            errs.append(np.array(cells) - np.mean(cells))
        return float(np.sqrt(np.mean(np.square(errs))))

    return spread(out) / max(spread(bad), 1e-9)


def error_left(
    out: Sequence[np.ndarray],
    bad: Sequence[np.ndarray],
    clean: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
) -> float:
    """Absolute error left inside the [H, W] bool `masks` (one a frame) ÷ the error added there."""
    added = left = 0.0
    for o, b, c, m in zip(out, bad, clean, masks, strict=True):
        c32 = c[m].astype(np.float32)
        added += float(np.abs(b[m].astype(np.float32) - c32).sum())
        left += float(np.abs(o[m].astype(np.float32) - c32).sum())
    return left / max(added, 1e-9)


def speck_masks(specks: Sequence, shape: tuple[int, int], frames: int) -> list[np.ndarray]:
    """[frames] [H, W] bool: the disks of `specks` (pipeline.film.synthetic.Speck), a pixel of rim added."""
    masks = [np.zeros(shape, bool) for _ in range(frames)]
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    for s in specks:
        masks[s.frame] |= np.hypot(xx - s.x, yy - s.y) <= s.radius + 1.0
    return masks


def scratch_masks(
    xs: Sequence[int], shape: tuple[int, int], frames: int, width: int = 2, drift: float = 0.3
) -> list[np.ndarray]:
    """[frames] [H, W] bool: the columns `synthetic.add_scratches` drew (same arguments)."""
    masks = []
    for t in range(frames):
        m = np.zeros(shape, bool)
        for x0 in xs:
            x = round(x0 + drift * float(np.sin(t / 4.0)))
            m[:, x : x + width] = True
        masks.append(m)
    return masks


SPECK_GROUPS = {
    "missed (< 10 % of it filled)": lambda s: s["filled"] < 0.1,
    "partly filled": lambda s: 0.1 <= s["filled"] < 0.9,
    "filled": lambda s: s["filled"] >= 0.9,
    "radius 1.5-2.5 px": lambda s: s["radius"] < 2.5,
    "radius 2.5-3.25 px": lambda s: 2.5 <= s["radius"] < 3.25,
    "radius 3.25-4 px": lambda s: s["radius"] >= 3.25,
    "contrast < 40 levels": lambda s: s["contrast"] < 40,
    "contrast 40-100": lambda s: 40 <= s["contrast"] < 100,
    "contrast >= 100": lambda s: s["contrast"] >= 100,
    "clip's first/last frame": lambda s: s["end"],
    "on a moving object": lambda s: not s["end"] and s["moving"],
    "elsewhere": lambda s: not s["end"] and not s["moving"],
}


def speck_rows(
    out: Sequence[np.ndarray],
    bad: Sequence[np.ndarray],
    clean: Sequence[np.ndarray],
    specks: Sequence,
    filled: Sequence[np.ndarray | None],
    moving: Sequence[np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """One row per added speck (pipeline.film.synthetic.Speck): its radius, contrast (levels against
    the clean picture under it), whether in the clip's first or last frame, on a moving object
    (`moving`: [H, W] bool a frame), the share of its core the cleaner filled (`filled`: the frames'
    `VideoFrame.filled`), and the absolute error added and left in its disk (as `speck_masks`)."""
    h, w = clean[0].shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    rows = []
    for s in specks:
        dist = np.hypot(xx - s.x, yy - s.y)
        disk, core = dist <= s.radius + 1.0, dist <= max(s.radius - 0.5, 1.0)
        c = clean[s.frame][disk].astype(np.float32)
        fill = filled[s.frame]
        rows.append(
            {
                "radius": float(s.radius),
                "contrast": float(abs(s.value - clean[s.frame][core].mean())),
                "end": s.frame in (0, len(clean) - 1),
                "moving": bool(moving is not None and moving[s.frame][core].mean() > 0.3),
                "filled": 0.0 if fill is None else float(fill[core].mean()),
                "added": float(np.abs(bad[s.frame][disk].astype(np.float32) - c).sum()),
                "left": float(np.abs(out[s.frame][disk].astype(np.float32) - c).sum()),
            }
        )
    return rows


def speck_breakdown(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{group: {n, left (its error left ÷ added), share (of all the error left)}} over `speck_rows`
    (of one or many clips), by whether filled, size, contrast and where (`SPECK_GROUPS`)."""
    total = max(sum(r["left"] for r in rows), 1e-9)
    out = {}
    for name, test in SPECK_GROUPS.items():
        g = [r for r in rows if test(r)]
        added, left = sum(r["added"] for r in g), sum(r["left"] for r in g)
        out[name] = {"n": float(len(g)), "left": left / max(added, 1e-9), "share": left / total}
    return out
