"""Gate weave and jitter: each frame moved onto the smooth path of its window, without cropping.

Consecutive frames' global shift is measured by phase correlation (OpenCV, sub-pixel, on a reduced luma
copy; of tensor pictures the same in torch on their device, pipeline.film.phase). A frame's position
relative to a neighbour is the sum of the shifts between them. The camera's own motion (a steady camera,
a pan, a tilt, a handheld sway) is smooth over the window (`radius` frames either side, about a second):
its robust quadratic trend is kept and only the jitter about it is removed; a window whose positions
show no frame-to-frame jitter (robust std of their second differences under `_MIN_JITTER_PX`) is left
alone. A cut, or a shift whose correlation peak is weak (a flash), breaks the chain there. The frame is
moved by cubic interpolation; the few pixels uncovered at the edge are mirrored from the picture (no
crop, the size never changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.phase import hanning, phase_correlate
from pipeline.film.torch_ops import is_tensor
from pipeline.film.trend import chain, trend_at_centre, wobble
from pipeline.film.window import Work, gray8, is_cut, sliding, thumbnail

if TYPE_CHECKING:
    from torch import Tensor

_WIDTH = 384  # phase correlation runs on a copy about this wide (shifts are scaled back)
_MIN_RESPONSE = 0.03  # a correlation peak weaker than this is not a shift of the same picture
_TILES = 3  # the shift is the median over a grid of this many tiles a side ...
_MIN_TILES = 5  # ... when this many of them have a clear peak
_MIN_JITTER_PX = 0.25  # frame-to-frame jitter (robust std, px) below this is no weave: the shot is left alone


def _small(image: Any) -> tuple[Any, float]:
    """[h, w] float32 reduced luma and the factor (source px per reduced px); of a tensor picture a
    tensor on its device (the 8-bit luma and its reduction as OpenCV's, made there)."""
    import cv2

    if is_tensor(image):
        import torch

        g8 = torch_ops.gray8_tensor(image)
        f = max(1.0, g8.shape[1] / _WIDTH)
        if f > 1.0:
            g8 = torch_ops.area_resize8(g8, (round(g8.shape[1] / f), round(g8.shape[0] / f)))
        return g8.to(torch.float32), f
    g = gray8(image)
    f = max(1.0, g.shape[1] / _WIDTH)
    if f > 1.0:
        g = cv2.resize(g, (round(g.shape[1] / f), round(g.shape[0] / f)), interpolation=cv2.INTER_AREA)
    return g.astype(np.float32), f


def shift_between(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> np.ndarray | None:
    """[2] (dx, dy) such that b(x) ~ a(x - d) in reduced px, or None when the peak is too weak.
    OpenCV multiplies an input of a DFT size (no padding needed) by the window in place: it is given
    copies, so a tile or a frame measured again (the next pair, the whole-frame fallback) is not
    measured windowed twice."""
    import cv2

    (dx, dy), response = cv2.phaseCorrelate(np.array(a), np.array(b), window)
    return None if response < _MIN_RESPONSE else np.array([dx, dy])


def global_shift(a: Any, b: Any) -> np.ndarray | None:
    """[2] the picture's shift from `a` to `b` (reduced px): the median of the shifts of a 3 x 3 grid
    of tiles, so an object moving on its own (a car, a hand) does not pass for the camera's motion;
    the whole frame's shift where too few tiles have texture enough. None: no shift measured.
    Tensors are correlated on their device (pipeline.film.phase): only the shifts leave it."""
    import cv2

    if is_tensor(a):
        return _global_shift_tensor(a, b)
    h, w = a.shape
    th, tw = h // _TILES, w // _TILES
    found = []
    if th >= 16 and tw >= 16:
        hann = cv2.createHanningWindow((tw, th), cv2.CV_32F)
        for i in range(_TILES):
            for j in range(_TILES):
                ys, xs = slice(i * th, (i + 1) * th), slice(j * tw, (j + 1) * tw)
                s = shift_between(a[ys, xs], b[ys, xs], hann)
                if s is not None:
                    found.append(s)
    if len(found) >= _MIN_TILES:
        return np.asarray(np.median(np.stack(found), axis=0))
    return shift_between(a, b, cv2.createHanningWindow((w, h), cv2.CV_32F))


def _global_shift_tensor(a: Tensor, b: Tensor) -> np.ndarray | None:
    """`global_shift` of two [h, w] float32 tensors: the nine tiles correlated in one batch."""
    h, w = a.shape
    th, tw = h // _TILES, w // _TILES
    found = []
    if th >= 16 and tw >= 16:
        win = hanning(th, tw, str(a.device))
        ta, tb = (x[: th * _TILES, : tw * _TILES].view(_TILES, th, _TILES, tw) for x in (a, b))
        res = phase_correlate(
            ta.transpose(1, 2).reshape(-1, th, tw), tb.transpose(1, 2).reshape(-1, th, tw), win
        )
        found = [np.array(r[:2]) for r in torch_ops.to_numpy(res) if r[2] >= _MIN_RESPONSE]
    if len(found) >= _MIN_TILES:
        return np.asarray(np.median(np.stack(found), axis=0))
    win = hanning(h, w, str(a.device))
    whole = torch_ops.to_numpy(phase_correlate(a, b, win))[0]
    return None if whole[2] < _MIN_RESPONSE else np.array(whole[:2])


def translate(image: np.ndarray, d: np.ndarray) -> np.ndarray:
    """`image` moved by d = (dx, dy) source px (cubic; uncovered edges mirrored)."""
    import cv2

    m = np.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]]], dtype=np.float64)
    h, w = image.shape[:2]
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return np.clip(out, 0.0, 1.0)


def _move(image: Any, d: np.ndarray) -> Any:
    if is_tensor(image):
        return torch_ops.translate_tensor(image, (float(d[0]), float(d[1])))
    return translate(image, d)


def _with_steps(works: Iterator[Work]) -> Iterator[tuple[Work, np.ndarray | None]]:
    """Each frame with its shift from the previous frame (source px; None at the start or a break)."""
    prev: Any = None  # the previous frame's reduced luma (numpy, or a tensor on the device)
    prev_thumb: np.ndarray | None = None
    for work in works:
        small, f = _small(work.image)
        thumb = thumbnail(work.image)
        step = None
        if prev is not None and prev.shape == small.shape and not is_cut(prev_thumb, thumb):
            s = global_shift(prev, small)
            step = None if s is None else s * f
        prev, prev_thumb = small, thumb
        yield work, step


def has_jitter(positions: np.ndarray) -> bool:
    """Whether a window's chained positions ([n, 2] px) jitter from frame to frame (weave is there)."""
    return wobble(positions) >= _MIN_JITTER_PX


def correction(past_steps: list[np.ndarray | None], own: np.ndarray | None, future_steps: list) -> np.ndarray:
    """[2] shift moving the centre frame onto the smooth path of its window (source px), or zeros
    when the window shows no jitter (the path is already smooth: nothing to remove).

    `past_steps[i]` is the shift into past frame i+1 from frame i (oldest first), `own` the shift into
    the centre frame from its predecessor, `future_steps[k]` the shift into future frame k from the one
    before it; a None step (a cut, a weak peak) ends the chain in that direction. The path is the
    window's robust quadratic trend (pipeline.film.trend): a pan, a tilt or a sway that speeds up
    stays, only the frame-to-frame jitter about it goes.
    """
    offsets, positions = chain(past_steps, own, future_steps)
    if not has_jitter(positions):
        return np.zeros(2)
    smooth = trend_at_centre(offsets, positions)
    return np.zeros(2) if smooth is None else smooth


def stabilise(works: Iterator[Work], radius: int, max_px: float) -> Iterator[Work]:
    """Frames moved onto their window's smooth path; `info["weave"]` is the [2] shift applied (px).
    A tensor picture (a torch `film.device`) is moved on its device (pipeline.film.torch_ops)."""
    for past, (work, own), future in sliding(_with_steps(works), radius, radius, lambda item: item[1]):
        steps = [s for _, s in future]
        d = correction(past, own, steps)
        work.info["jitter_found"] = has_jitter(chain(past, own, steps)[1])
        if float(np.hypot(*d)) > max_px:
            d = np.zeros(2)  # not weave: a jump this large is picture (or a broken measurement)
        if float(np.hypot(*d)) >= 0.02:
            work.image = _move(work.image, d)
        work.info["weave"] = d
        yield work
