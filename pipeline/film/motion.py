"""Motion-compensated neighbours: optical flow (OpenCV DIS) and neighbour frames warped onto a frame.

Flow runs on a median-filtered luma copy (specks and grain do not steer it), at most 576 lines high
(larger frames: flow at reduced size, scaled up). `warped(centre, neighbour)` is the neighbour
resampled so that each pixel shows what the flow says sits under the centre frame's pixel.
"""

from __future__ import annotations

import numpy as np

from pipeline.film.window import gray8

_FLOW_LINES = 576  # flow is computed on at most this many lines


def flow_input(image: np.ndarray) -> tuple[np.ndarray, float]:
    """[h, w] uint8 median-filtered luma for flow, and the factor (source px per flow px)."""
    import cv2

    g = gray8(image)
    f = max(1.0, g.shape[0] / _FLOW_LINES)
    if f > 1.0:
        g = cv2.resize(g, (round(g.shape[1] / f), round(g.shape[0] / f)), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.medianBlur(g, 5)), f


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[h, w, 2] float32 flow with a(x) ~ b(x + flow(x)) for flow inputs `a`, `b` (DIS, "fast": on the
    known-answer clips as good as "medium" for dust, at a third of the time)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)  # type: ignore[attr-defined]
    return np.asarray(dis.calc(a, b, None))


def warp(neighbour: np.ndarray, fl: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(`neighbour` ([H, W, C] float32) resampled at x + flow(x): its picture aligned onto the centre's,
    [H, W] bool where that sample lies inside the neighbour: elsewhere the picture entered or left)."""
    import cv2

    h, w = neighbour.shape[:2]
    if factor > 1.0:
        fl = cv2.resize(fl, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(factor)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + fl[..., 0], gy + fl[..., 1]
    out = cv2.remap(neighbour, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return np.asarray(out).reshape(neighbour.shape), inside
