"""Local flicker: gains that vary smoothly across the frame, removed after the global deflicker.

Old film often flickers unevenly: one side of the frame pumps more than the other (uneven
development, a wandering printer light). After the global gain (pipeline.film.deflicker), the frame
is cut into a coarse grid of cells (`GRID` x `GRID`, on a small copy of its luma). From frame to
frame each cell's brightness step is measured as the median log ratio of its pixels minus the whole
frame's median (the global part is the deflicker's; a median ignores moving objects, specks and a
little camera motion), and the steps chain into each cell's curve over the window, within the shot
(pipeline.film.trend). As for the global gain, each cell's robust trend is the film's own light (a
fade, a lamp, light that changes as the camera moves) and is kept: a straight line over the window
(a cell's light seldom curves within half a second, and a line's value at the centre is steadier
than a quadratic's, which followed the flicker itself: 0.47 of it left on the quick set, 0.35);
the centre frame's cells are brought onto it: a grid of gains, interpolated bilinearly between the
cell centres over the frame, limited to [1/max_gain, max_gain]. A window whose cells barely wobble
has no local flicker and is left alone; a large step that persists in a cell (a lamp switched on
there) ends the window there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.torch_ops import is_tensor
from pipeline.film.trend import chain, trend_at_centre, wobble
from pipeline.film.window import Work, measured_steps, same_shot, sliding

GRID = 3  # cells across and down
_WIDTH = 64  # cell steps are measured on copies this wide
_DARK, _BRIGHT = 0.02, 0.98  # ... from pixels inside this range in both frames (not clipped)
_MIN_LOCAL = 0.01  # frame-to-frame wobble of the cells' log brightness below this: no local flicker
_STEP = 0.12  # a change of a cell's log brightness this large that persists is light, not flicker ...
_ABOVE = 4.0  # ... when it is this many times the spread on either side and the cell's wobble
_SIDE = 4  # frames either side a persistent step is judged on


def cell_logs(image: Any) -> np.ndarray:
    """[h, w] float32 log luma of a small copy of `image` ([H, W, 3] float32; NaN where dark or
    clipped); a tensor is reduced on its device."""
    import cv2

    h, w = image.shape[:2]
    f = max(1.0, w / _WIDTH)
    size = (max(GRID, round(w / f)), max(GRID, round(h / f)))
    if is_tensor(image):
        small = torch_ops.to_numpy(torch_ops.area_resize(image, size))
    else:
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    y = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    ok = (y > _DARK) & (y < _BRIGHT)
    return np.where(ok, np.log(np.maximum(y, _DARK)), np.nan).astype(np.float32)


def cell_steps(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """[GRID * GRID] each cell's median log brightness ratio b / a minus the whole frame's (None
    when a cell has too few usable pixels)."""
    d = b - a
    usable = d[np.isfinite(d)]
    if usable.size < 16 * GRID * GRID:
        return None
    whole = float(np.median(usable))
    h, w = d.shape
    out = np.empty(GRID * GRID)
    for i in range(GRID):
        for j in range(GRID):
            cell = d[i * h // GRID : (i + 1) * h // GRID, j * w // GRID : (j + 1) * w // GRID]
            v = cell[np.isfinite(cell)]
            if v.size < 8:
                return None
            out[i * GRID + j] = float(np.median(v)) - whole
    return out


def _shared_part(offsets: np.ndarray, curve: np.ndarray) -> tuple[int, int]:
    """(first, last) offsets of the window the centre frame shares without a persistent step of
    brightness in any cell (a lamp switched on in part of the picture): flicker comes back."""
    lo, hi = int(offsets[0]), int(offsets[-1])
    if len(curve) < 4:  # no step with two frames either side to judge it on (and no median of nothing)
        return lo, hi
    least = np.maximum(_STEP, _ABOVE * 1.4826 * np.median(np.abs(np.diff(curve, axis=0)), axis=0))  # [cells]
    for i in range(1, len(curve)):
        before, after = curve[max(0, i - _SIDE) : i], curve[i : i + _SIDE]
        if len(before) < 2 or len(after) < 2:
            continue
        jump = np.median(after, axis=0) - np.median(before, axis=0)
        spread = np.maximum(*(np.median(np.abs(s - np.median(s, axis=0)), axis=0) for s in (before, after)))
        if np.any((np.abs(jump) > least) & (np.abs(jump) > _ABOVE * spread)):
            if offsets[i] <= 0:
                lo = max(lo, int(offsets[i]))
            else:
                hi = min(hi, int(offsets[i]) - 1)
    return lo, hi


def local_gains(
    past: list[np.ndarray | None], own: np.ndarray | None, future: list[np.ndarray | None]
) -> tuple[np.ndarray | None, bool]:
    """([GRID, GRID] gains bringing the centre frame's cells onto their trends or None, whether the
    window's cells wobble at all)."""
    offsets, curve = chain(past, own, future)
    lo, hi = _shared_part(offsets, curve)
    keep = (offsets >= lo) & (offsets <= hi)
    offsets, curve = offsets[keep], curve[keep]
    if wobble(curve) < _MIN_LOCAL:
        return None, False
    trend = trend_at_centre(offsets, curve, max_degree=1)  # a quadratic leaves 0.47 of it, a line 0.35
    return (None, True) if trend is None else (np.exp(trend).reshape(GRID, GRID), True)


def _apply_field(image: Any, g: np.ndarray) -> Any:
    """`image` times the [GRID, GRID] gains interpolated bilinearly over the frame, clipped to [0, 1]."""
    import cv2

    h, w = image.shape[:2]
    if is_tensor(image):
        field = torch_ops.bilinear_resize(torch_ops.as_device_array(g, image), (w, h))
        return (image * field[..., None]).clamp_(0.0, 1.0)
    gains = np.asarray(cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR))
    return np.clip(image * gains[..., None], 0.0, 1.0)


def local_deflicker(works: Iterator[Work], radius: int, max_gain: float) -> Iterator[Work]:
    """Frames with a smooth field of gains applied where the window has local flicker;
    `info["local_flicker_found"]` says whether it had, `info["local_gain"]` the largest |gain - 1|."""
    measured = measured_steps(works, cell_logs, cell_steps)
    for past, (work, own, cut), future in sliding(measured, radius, radius, lambda item: item[1:]):
        earlier, later = same_shot([c for _, c in past], cut, [f[2] for f in future])
        steps_before = [s for s, _ in past[len(past) - earlier :]] if earlier else []
        g, found = local_gains(steps_before, None if cut else own, [f[1] for f in future[:later]])
        work.info["local_flicker_found"] = found
        if g is not None:
            g = np.clip(g, 1.0 / max_gain, max_gain).astype(np.float32)
            work.image = _apply_field(work.image, g)
            work.info["local_gain"] = float(np.abs(g - 1.0).max())
        yield work
