"""Motion-compensated neighbours: optical flow (OpenCV DIS) and neighbour frames warped onto a frame.

Flow runs on a median-filtered luma copy (specks and grain do not steer it), at most 576 lines high
(larger frames: flow at reduced size, scaled up). `warped(centre, neighbour)` is the neighbour
resampled so that each pixel shows what the flow says sits under the centre frame's pixel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.torch_ops import is_tensor
from pipeline.film.window import gray8

if TYPE_CHECKING:
    from torch import Tensor

_FLOW_LINES = 576  # flow is computed on at most this many lines


def flow_input(image: np.ndarray | Tensor) -> tuple[np.ndarray, float]:
    """[h, w] uint8 median-filtered luma for flow, and the factor (source px per flow px). Of a tensor
    picture it is made on its device (8-bit luma, area reduction, 5 x 5 median: OpenCV's) and only
    the small picture comes to the CPU, where the flow runs."""
    import cv2

    if is_tensor(image):
        g8 = torch_ops.gray8_tensor(image)
        f = max(1.0, g8.shape[0] / _FLOW_LINES)
        if f > 1.0:
            g8 = torch_ops.area_resize8(g8, (round(g8.shape[1] / f), round(g8.shape[0] / f)))
        return torch_ops.to_numpy(torch_ops.median_blur(g8, 5)), f
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


@overload
def warp(neighbour: np.ndarray, fl: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def warp(neighbour: Tensor, fl: np.ndarray, factor: float) -> tuple[Tensor, Tensor]: ...
def warp(
    neighbour: np.ndarray | Tensor, fl: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray] | tuple[Tensor, Tensor]:
    """(`neighbour` ([H, W, C] float32) resampled at x + flow(x): its picture aligned onto the centre's,
    [H, W] bool where that sample lies inside the neighbour: elsewhere the picture entered or left).
    A tensor `neighbour` is resampled on its device (both results are tensors there)."""
    import cv2

    if is_tensor(neighbour):
        return _warp_tensor(neighbour, fl, factor)
    h, w = neighbour.shape[:2]
    if factor > 1.0:
        fl = cv2.resize(fl, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(factor)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + fl[..., 0], gy + fl[..., 1]
    out = cv2.remap(neighbour, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return np.asarray(out).reshape(neighbour.shape), inside


def _warp_tensor(neighbour: Tensor, fl: np.ndarray, factor: float) -> tuple[Tensor, Tensor]:
    import torch

    h, w = neighbour.shape[:2]
    f = torch.as_tensor(fl, device=neighbour.device)
    if factor > 1.0:
        f = torch_ops.bilinear_resize(f, (w, h)) * factor
    gy, gx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=f.device),
        torch.arange(w, dtype=torch.float32, device=f.device),
        indexing="ij",
    )
    mx, my = gx + f[..., 0], gy + f[..., 1]
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return torch_ops.remap(neighbour, mx, my), inside


def affine_motion(fl: np.ndarray, factor: float, step: int = 16) -> np.ndarray:
    """[2, 3] float64 the affine map x -> x + flow(x) (source px) that fits the flow `fl` (at
    flow resolution, `factor` source px per flow px) best: least squares on a grid of samples
    every `step` px, twice refitted without the samples off it by more than 3 x the median (objects
    moving on their own, flow errors): the picture's own motion, a pan, tilt or zoom."""
    h, w = fl.shape[:2]
    gy, gx = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    src = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)], axis=1).astype(np.float64)
    dst = src[:, :2] + fl[gy.ravel(), gx.ravel()].astype(np.float64)
    keep = np.ones(len(src), bool)
    a = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for _ in range(3):
        if int(keep.sum()) < 6:
            break
        a = np.linalg.lstsq(src[keep], dst[keep], rcond=None)[0].T  # [2, 3]
        err = np.hypot(*(src @ a.T - dst).T)
        keep = err <= 3.0 * max(float(np.median(err)), 0.05)
    a[:, 2] *= factor  # translation in source px (the linear part is the same at any resolution)
    return a
