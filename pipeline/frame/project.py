"""Consistency in frame coordinates: the downscaling operator, and projection onto its solutions.

The promise the method rests on: what we paste, downscaled back to the footage's size, is the
footage. `downscale` is THE operator that "downscaled" means everywhere: antialiased bicubic
(Keys' kernel with a = -0.5, widened by the reduction factor, taps at the image edge dropped and
the rest renormalised). It is exactly `torch.nn.functional.interpolate(..., mode="bicubic",
antialias=True)`, which the search's loss uses (`pipeline.search.loss.downscale`; a test holds the
two equal), written as a separable pair of weight matrices so that it runs in numpy and torch and,
above all, so that it can be inverted.

`project_region` enforces the promise after paste-back, tone and grain matching: it moves the output
inside a face region onto the set of images whose downscale equals the source there, by iterative
back-projection of the low-resolution residual through the operator's pseudo-inverse (the idea of
the Consistency Enforcing Module of Bahat & Michaeli, "Explorable Super Resolution", CVPR 2020:
detail the prior invented survives only where the footage cannot see it, i.e. in the operator's
null space). Without a mask one step is the exact orthogonal projection; with the paste's soft mask
the steps are weighted by it, so nothing outside the face moves, and a few steps converge. The
iteration is torch code (`project_tensor`), the same on the CPU and on CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

_A = -0.5  # Keys' cubic parameter of torch's (and PIL's) antialiased bicubic filter


def _cubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * _A
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def aa_rows(in_size: int, out_size: int, start: int = 0, stop: int | None = None) -> tuple[int, np.ndarray]:
    """Rows [start, stop) of the 1-D downscale matrix from `in_size` to `out_size` samples.

    Returns (first input index, weights [stop - start, n]): output sample i is
    sum_k weights[i - start, k] * input[first + k]. Matches torch's `_compute_indices_weights_aa`.
    """
    stop = out_size if stop is None else stop
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1 else 2.0
    inv = 1.0 / scale if scale >= 1 else 1.0
    centers = scale * (np.arange(start, stop, dtype=np.float64) + 0.5)
    lo = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # int64 truncation, as torch does
    hi = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    first, last = int(lo.min()), int(hi.max())
    cols = np.arange(first, last, dtype=np.float64)
    w = _cubic((cols[None, :] - centers[:, None] + 0.5) * inv)  # [rows, n]
    inside = (cols[None, :] >= lo[:, None]) & (cols[None, :] < hi[:, None])
    w = np.where(inside, w, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return first, w


@lru_cache(maxsize=32)
def _full(in_size: int, out_size: int) -> np.ndarray:
    first, w = aa_rows(in_size, out_size)
    full = np.zeros((out_size, in_size), np.float64)
    full[:, first : first + w.shape[1]] = w
    return full


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bicubic resize of `image` [H, W] or [H, W, C] (float) to size (h, w), float64.

    Identity when the size is unchanged (as the torch operator is).
    """
    h, w = size
    if image.shape[:2] == (h, w):
        return np.asarray(image, np.float64)
    wy, wx = _full(image.shape[0], h), _full(image.shape[1], w)
    x = np.asarray(image, np.float64)
    out = np.tensordot(wy, x, axes=(1, 0))  # [h, W, ...]
    return np.moveaxis(np.tensordot(wx, out, axes=(1, 1)), 0, 1)  # [h, w, ...]


@dataclass(frozen=True)
class Window:
    """A low-resolution window and the high-resolution pixels its downscale reads."""

    ly: tuple[int, int]  # rows [y0, y1) of the source
    lx: tuple[int, int]  # columns [x0, x1) of the source
    hy: tuple[int, int]  # rows of the output the window's pixels read
    hx: tuple[int, int]
    wy: np.ndarray  # [ly1 - ly0, hy1 - hy0] weights
    wx: np.ndarray  # [lx1 - lx0, hx1 - hx0]


def window(
    lr_box: tuple[int, int, int, int],  # x0, y0, x1, y1 in source pixels (clipped to the frame here)
    lr_shape: tuple[int, int],  # (h, w) of the source frame
    hr_shape: tuple[int, int],  # (H, W) of the output frame
) -> Window | None:
    x0, y0, x1, y1 = lr_box
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, lr_shape[1]), min(y1, lr_shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    fy, wy = aa_rows(hr_shape[0], lr_shape[0], y0, y1)
    fx, wx = aa_rows(hr_shape[1], lr_shape[1], x0, x1)
    return Window((y0, y1), (x0, x1), (fy, fy + wy.shape[1]), (fx, fx + wx.shape[1]), wy, wx)


def _back_projector(w: np.ndarray, damping: float) -> np.ndarray:
    """w^T (w w^T + damping I)^-1: the pseudo-inverse of one axis' downscale (damping 0), or its
    Tikhonov-damped form, which corrects the residual's finest frequencies (where the operator is
    weak and the footage holds mostly grain) only partly per step instead of amplifying them."""
    g = w @ w.T  # [lr, lr]; w has full row rank (each output sample has its own taps)
    return np.asarray(np.linalg.solve(g + max(damping, 0.0) * np.eye(g.shape[0]), w).T)


def _apply(wy: np.ndarray, wx: np.ndarray, x: np.ndarray) -> np.ndarray:
    """wy @ x @ wx.T on each channel of x [a, b, C] -> [wy rows, wx rows, C]."""
    a, b, c = x.shape
    rows = (wy @ x.reshape(a, b * c)).reshape(wy.shape[0], b, c)  # [wy rows, b, C]
    return np.matmul(wx, rows)  # [wy rows, wx rows, C]: wx applied to each row's [b, C]


@dataclass(frozen=True)
class Projection:
    image: np.ndarray  # [H, W, C] float32: the output with the region projected (same array, updated)
    psnr_before: float  # dB, downscaled output vs source inside the region, before
    psnr_after: float  # dB, after (float, before any quantisation)
    steps: int  # back-projection steps taken


def region_psnr(
    out: np.ndarray,  # [H, W, C] float in [0, 1] output frame
    source: np.ndarray,  # [h, w, C] float in [0, 1]
    win: Window,
    weight: np.ndarray,  # [ly1 - ly0, lx1 - lx0] which source pixels count (0/1 or soft)
) -> float:
    """PSNR of the downscaled output against the source over the weighted low-res region."""
    (y0, y1), (x0, x1) = win.ly, win.lx
    (a0, a1), (b0, b1) = win.hy, win.hx
    lr = _apply(win.wy, win.wx, np.asarray(out[a0:a1, b0:b1], np.float64))
    err = (lr - source[y0:y1, x0:x1]) ** 2
    mse = float((err.mean(axis=2) * weight).sum() / max(float(weight.sum()), 1e-9))
    return 100.0 if mse <= 1e-10 else 10.0 * float(np.log10(1.0 / mse))


def project_region(
    out: np.ndarray,  # [H, W, C] float32 in [0, 1], the composed output frame (modified in place)
    source: np.ndarray,  # [h, w, C] float in [0, 1], the footage
    win: Window,
    hr_mask: np.ndarray,  # [hy1 - hy0, hx1 - hx0] in [0, 1]: how freely each output pixel may move
    lr_mask: np.ndarray,  # [ly1 - ly0, lx1 - lx0] in {0, 1}: the source pixels that must agree
    steps: int = 12,
    target_db: float = 50.0,  # stop once the region agrees this well
    damping: float = 0.0,  # Tikhonov term of the back-projector, relative to the operator's energy
    floor_db: float = 0.0,  # with damping: undamped steps follow until the region agrees this well
    device: str = "cpu",
) -> Projection:
    """`project_tensor` on numpy frames: the region goes to `device` and its projection comes back."""
    import torch

    (y0, y1), (x0, x1) = win.ly, win.lx
    (a0, a1), (b0, b1) = win.hy, win.hx
    dev = torch.device(device)
    region = torch.as_tensor(np.asarray(out[a0:a1, b0:b1], np.float32), device=dev)
    src = torch.as_tensor(np.asarray(source[y0:y1, x0:x1], np.float32), device=dev)
    region, before, after, taken = project_tensor(
        region, src, win, hr_mask, lr_mask, steps, target_db, damping, floor_db
    )
    out[a0:a1, b0:b1] = region.cpu().numpy().astype(out.dtype)
    return Projection(out, before, after, taken)


def _apply_t(wy: Tensor, wx: Tensor, x: Tensor) -> Tensor:
    """wy @ x @ wx.T on each channel of the tensor x [a, b, C] -> [wy rows, wx rows, C], as two GEMMs."""
    a, b, c = x.shape
    rows = (wy @ x.reshape(a, b * c)).reshape(-1, b, c)  # [wy rows, b, C]
    cols = rows.transpose(1, 2).reshape(-1, b) @ wx.T  # [wy rows * C, wx rows]
    return cols.reshape(rows.shape[0], c, -1).transpose(1, 2)  # [wy rows, wx rows, C]


def project_tensor(
    region: Tensor,  # [hy1 - hy0, hx1 - hx0, C] float32 tensor: the output under the window
    src: Tensor,  # [ly1 - ly0, lx1 - lx0, C] float32 tensor (same device): the footage there
    win: Window,
    hr_mask: np.ndarray | Tensor,  # (numpy, or a tensor on the region's device)
    lr_mask: np.ndarray | Tensor,
    steps: int = 12,
    target_db: float = 50.0,
    damping: float = 0.0,
    floor_db: float = 0.0,
) -> tuple[Tensor, float, float, int]:
    """Back-project the low-resolution residual until the region's downscale equals the source:
    (the projected region, PSNR before, after, steps taken). The same torch code on CPU and CUDA.

    Each step: residual r = source - downscale(out) on the constrained pixels, correction
    pinv(D) r (the minimum-norm image with that downscale), applied weighted by `hr_mask`, then the
    output is clipped to [0, 1] (the clip is a second convex set; alternating keeps both). float32
    inside the loop (far finer than any output's quantisation); the PSNR is summed in float64.
    """
    import torch

    dev = region.device

    def t(a: np.ndarray | Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        if isinstance(a, torch.Tensor):  # a mask already on the device
            return a.to(device=dev, dtype=dtype)
        return torch.as_tensor(
            np.asarray(a, dtype=np.float64 if dtype == torch.float64 else np.float32), device=dev
        )

    wy, wx = t(win.wy), t(win.wx)
    py, px = (t(_back_projector(w, damping)) for w in (win.wy, win.wx))  # [hr, lr]
    m_h, m_l = t(hr_mask)[..., None], t(lr_mask)[..., None]
    weight = t(lr_mask, torch.float64)
    total = max(float(weight.sum()), 1e-9)

    def psnr_of(r: Tensor) -> float:
        mse = float(((r.double() ** 2).mean(dim=2) * weight).sum()) / total
        return 100.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)

    residual = src - _apply_t(wy, wx, region)
    before = after = psnr_of(residual)
    taken = 0
    while taken < steps and after < target_db:
        region = (region + m_h * _apply_t(py, px, residual * m_l)).clamp_(0.0, 1.0)
        residual = src - _apply_t(wy, wx, region)
        after = psnr_of(residual)
        taken += 1
    if after < floor_db and damping > 0:
        # Damped steps left too much (footage that is mostly fine grain or noise): exact steps until
        # the floor is reached, amplified grain being the lesser evil than a broken promise.
        py, px = (t(_back_projector(w, 0.0)) for w in (win.wy, win.wx))
        while taken < 2 * steps and after < floor_db:
            region = (region + m_h * _apply_t(py, px, residual * m_l)).clamp_(0.0, 1.0)
            residual = src - _apply_t(wy, wx, region)
            after = psnr_of(residual)
            taken += 1
    return region, before, after, taken


def largest_share(
    out: np.ndarray,  # [H, W, C] float in [0, 1], the output frame (projected)
    add: np.ndarray,  # [H, W, C] float: what is to be added to it (film grain)
    source: np.ndarray,  # [h, w, C] float in [0, 1], the footage
    win: Window,
    hr_mask: np.ndarray,  # [hy1 - hy0, hx1 - hx0] in [0, 1]: where the share applies (1: fully)
    weight: np.ndarray,  # [ly1 - ly0, lx1 - lx0]: which source pixels count (as for region_psnr)
    floor_db: float,  # the region must still agree this well
) -> float:
    """The largest k in [0, 1] such that `out + add * (1 - (1 - k) * hr_mask)` still agrees with
    the source to `floor_db` over the weighted region (0 when even k = 0 does not).

    The region's residual is affine in k, so its mean squared error is a quadratic in k, solved
    exactly (clipping to [0, 1] is left out: it only moves values towards the footage's range)."""
    (y0, y1), (x0, x1) = win.ly, win.lx
    (a0, a1), (b0, b1) = win.hy, win.hx
    m = np.asarray(hr_mask, np.float64)[..., None]
    part = np.asarray(add[a0:a1, b0:b1], np.float64)
    e0 = _apply(win.wy, win.wx, np.asarray(out[a0:a1, b0:b1], np.float64) + part * (1 - m))
    e0 -= source[y0:y1, x0:x1]
    v = _apply(win.wy, win.wx, part * m)
    w = np.asarray(weight, np.float64)[..., None] / max(float(weight.sum()) * e0.shape[2], 1e-9)
    a, b, c = float((w * e0 * e0).sum()), float((w * e0 * v).sum()), float((w * v * v).sum())
    return _share(a, b, c, floor_db)


def _share(a: float, b: float, c: float, floor_db: float) -> float:
    """The largest k in [0, 1] with a + 2 b k + c k^2 (a region's mean squared error) within the floor."""
    limit = 10.0 ** (-floor_db / 10.0)  # the largest mean squared error allowed
    if a + 2 * b + c <= limit:
        return 1.0
    if a > limit or c <= 0:
        return 0.0
    # c k^2 + 2 b k + (a - limit) = 0: the larger root, where the error grows through the limit.
    k = (-b + np.sqrt(max(b * b - c * (a - limit), 0.0))) / c
    return float(np.clip(k, 0.0, 1.0))


def largest_share_tensor(
    out: Tensor,  # [H, W, C] float32 tensor in [0, 1], the output frame (projected), on its device
    add: Tensor,  # [H, W, C] float32 tensor (same device): what is to be added to it (film grain)
    source: np.ndarray,  # [h, w, C] float in [0, 1], the footage (its window is sent to the device)
    win: Window,
    hr_mask: np.ndarray | Tensor,  # (numpy, or a tensor on the frame's device)
    weight: np.ndarray,
    floor_db: float,
) -> float:
    """`largest_share` in torch on the frame's device (float64 sums, as numpy's): only the three
    sums of the quadratic come back to the host."""
    import torch

    (y0, y1), (x0, x1) = win.ly, win.lx
    (a0, a1), (b0, b1) = win.hy, win.hx
    dev = out.device

    def t(a: np.ndarray | Tensor) -> Tensor:
        if isinstance(a, torch.Tensor):
            return a.to(device=dev, dtype=torch.float64)
        return torch.as_tensor(np.asarray(a, np.float64), device=dev)

    wy, wx, m = t(win.wy), t(win.wx), t(hr_mask)[..., None]
    part = add[a0:a1, b0:b1].double()
    e0 = _apply_t(wy, wx, out[a0:a1, b0:b1].double() + part * (1 - m)) - t(source[y0:y1, x0:x1])
    v = _apply_t(wy, wx, part * m)
    w = t(weight)[..., None] / max(float(np.sum(weight)) * e0.shape[2], 1e-9)
    a, b, c = torch.stack([(w * e0 * e0).sum(), (w * e0 * v).sum(), (w * v * v).sum()]).tolist()
    return _share(a, b, c, floor_db)
