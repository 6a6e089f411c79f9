"""Deflicker: frame-to-frame brightness pumping removed, the film's own light changes kept.

Flicker (exposure and printing-light variation from frame to frame) is a per-frame gain. The step
in brightness from one frame to the next is measured per channel as the median log ratio of the two
frames' small blurred copies (moving objects, specks and a little camera motion do not move a
median), and the steps chain into the log-brightness curve of the window (`radius` frames either
side, within the shot; pipeline.film.trend). The curve's robust quadratic trend is the film's own
light (a fade, a lamp coming up, the camera turning to a brighter view) and is kept; the gain brings
the frame onto it. A window whose curve barely wobbles from frame to frame has no flicker and is left
alone, and a large step that persists (a light switched on, a cut the thumbnails missed) ends the
window there: it is not flicker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.torch_ops import is_tensor
from pipeline.film.trend import chain, trend_at_centre, wobble
from pipeline.film.window import Work, measured_steps, same_shot, sliding

_WIDTH = 64  # brightness steps are measured on copies this wide
_DARK, _BRIGHT = 0.02, 0.98  # ... from pixels inside this range in both frames (not clipped)
_MIN_FLICKER = 0.006  # frame-to-frame wobble of log brightness (robust std) below this: no flicker
_STEP = 0.08  # a change of log brightness this large that persists is light, not flicker ...
_STEADY = 4.0  # ... when it is this many times the spread of the curve on either side of it
_ABOVE_FLICKER = 3.0  # ... and this many times the frame-to-frame flicker
_SIDE = 4  # frames either side a persistent step is judged on


def small_log(image: Any) -> np.ndarray:
    """[h, w, 3] float32 log brightness of a small blurred copy (NaN where dark or clipped); a tensor
    is reduced on its device."""
    import cv2

    h, w = image.shape[:2]
    f = max(1.0, w / _WIDTH)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    if is_tensor(image):
        small = torch_ops.to_numpy(torch_ops.area_resize(image, size))
    else:
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small = np.asarray(cv2.GaussianBlur(small, (3, 3), 0))
    ok = (small > _DARK) & (small < _BRIGHT)
    return np.where(ok, np.log(np.maximum(small, _DARK)), np.nan).astype(np.float32)


def log_step(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """[3] median log brightness ratio b / a per channel (small_log copies), None without enough pixels."""
    d = (b - a).reshape(-1, 3)
    out = np.zeros(3)
    for c in range(3):
        v = d[:, c][np.isfinite(d[:, c])]
        if v.size < 16:
            return None
        out[c] = float(np.median(v))
    return out


def persistent_steps(offsets: np.ndarray, curve: np.ndarray) -> tuple[int, int]:
    """(first, last) offsets of the part of the window the centre frame shares without a persistent
    step of brightness (light switched, a cut the thumbnails missed): flicker goes up and comes back."""
    y = curve.mean(axis=1)
    lo, hi = int(offsets[0]), int(offsets[-1])
    least = max(_STEP, _ABOVE_FLICKER * wobble(curve))  # under heavy flicker a run of dark frames is no step
    for i in range(1, len(y)):
        before, after = y[max(0, i - _SIDE) : i], y[i : i + _SIDE]
        if len(before) < 2 or len(after) < 2:
            continue
        jump = float(np.median(after) - np.median(before))
        spread = max(float(np.median(np.abs(s - np.median(s)))) for s in (before, after))
        if abs(jump) > least and abs(jump) > _STEADY * spread:
            if offsets[i] <= 0:
                lo = max(lo, int(offsets[i]))
            else:
                hi = min(hi, int(offsets[i]) - 1)
    return lo, hi


def gain(
    past: list[np.ndarray | None], own: np.ndarray | None, future: list[np.ndarray | None]
) -> tuple[np.ndarray, bool]:
    """([3] gains bringing the centre frame onto its window's brightness trend, whether the window
    flickers at all: without flicker the gains are ones)."""
    offsets, curve = chain(past, own, future)
    lo, hi = persistent_steps(offsets, curve)
    keep = (offsets >= lo) & (offsets <= hi)
    offsets, curve = offsets[keep], curve[keep]
    if wobble(curve) < _MIN_FLICKER:
        return np.ones(3), False
    trend = trend_at_centre(offsets, curve)
    return (np.ones(3), True) if trend is None else (np.exp(trend), True)


def deflicker(works: Iterator[Work], radius: int, max_gain: float) -> Iterator[Work]:
    """Frames with per-channel gains applied; `info["gain"]` holds the [3] gains used. The window
    stops at cuts: a shot's brightness is never pulled towards its neighbour's."""
    measured = measured_steps(works, small_log, log_step)
    for past, (work, own, cut), future in sliding(measured, radius, radius, lambda item: item[1:]):
        earlier, later = same_shot([c for _, c in past], cut, [f[2] for f in future])
        steps_before = [s for s, _ in past[len(past) - earlier :]] if earlier else []
        g, found = gain(steps_before, None if cut else own, [f[1] for f in future[:later]])
        g = np.clip(g, 1.0 / max_gain, max_gain)
        if np.any(np.abs(g - 1.0) > 1e-4) and is_tensor(work.image):
            work.image = (work.image * torch_ops.as_device_array(g, work.image)).clamp_(0.0, 1.0)
        elif np.any(np.abs(g - 1.0) > 1e-4):
            work.image = np.clip(work.image * g.astype(np.float32), 0.0, 1.0)
        work.info["gain"] = g
        work.info["flicker_found"] = found
        yield work
