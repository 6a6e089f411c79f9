"""Grain measured for regrain, line-preserving denoise for drawn pictures, and dithered quantisation.

- `measure_grain`: with grain reduction ("regrain"), the grain of each frame is measured (strength
  per brightness band, from what the reduction removed, and size); compose puts grain of that
  strength and size back at output resolution, after the upscale (`pipeline.frame.grain`).
- `line_denoise`: OpenCV's bilateral filter flattens colour areas and keeps line edges (cartoons).
- `quantise`: float pictures back to 8/16 bits, with triangular dither (seeded per frame) when asked,
  so smooth gradients and flat fills do not band.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.film.torch_ops import is_tensor

if TYPE_CHECKING:
    from torch import Tensor

_BANDS = 8  # brightness bands the grain strength is measured in
_LUMA = np.array([0.299, 0.587, 0.114])  # BT.601, as film.window.luma


def grain_profile(y: np.ndarray, residual: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """[_BANDS] grain std (0..1) per brightness band of the cleaned luma `y` ([H, W]).

    The shape over brightness comes from what the reduction removed (`residual`); its level, when
    `sigma` (the grain measured against the aligned neighbours) is given, from `sigma`: a temporal
    average removes only part of the grain, so the residual alone under-states it."""
    band = np.clip((y[::3, ::3] * _BANDS).astype(np.int32), 0, _BANDS - 1)
    r = residual[::3, ::3]
    overall = float(1.4826 * np.median(np.abs(r)))
    prof = np.full(_BANDS, overall, np.float64)
    for b in range(_BANDS):
        sel = r[band == b]
        if sel.size >= 64:
            prof[b] = 1.4826 * float(np.median(np.abs(sel)))
    if sigma is not None and overall > 1e-6:
        prof *= sigma / overall
    return prof


@lru_cache(maxsize=1)
def _size_table() -> tuple[np.ndarray, np.ndarray]:
    """Blur sigmas (px) and the correlation of neighbouring pixels of white noise blurred by each."""
    import cv2

    noise = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    sigmas = np.array([0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0])
    rho = [_neighbour_correlation(cv2.GaussianBlur(noise, (0, 0), s) if s > 0 else noise) for s in sigmas]
    return np.array(rho), sigmas


def _neighbour_correlation(r: np.ndarray) -> float:
    """Mean correlation of horizontally and vertically adjacent values of `r` (its mean removed)."""
    r = r - r.mean()
    var = float((r * r).mean())
    if var <= 0:
        return 0.0
    return float(((r[:, 1:] * r[:, :-1]).mean() + (r[1:] * r[:-1]).mean()) / (2 * var))


def grain_size(grain: np.ndarray | Tensor) -> float:
    """The grain's size: the blur (source px) of white noise whose neighbouring pixels correlate as
    those of `grain` ([H, W], grain and little else) do; outliers (edges, misaligned detail) are
    clipped at 3 robust std devs first. A tensor is measured on its device (one number crosses)."""
    if is_tensor(grain):
        return _grain_size_tensor(grain)
    s = 1.4826 * float(np.median(np.abs(grain - np.median(grain))))
    r = np.clip(grain, -3 * s, 3 * s) if s > 0 else grain
    rho, sigmas = _size_table()
    return float(np.interp(_neighbour_correlation(np.asarray(r, np.float64)), rho, sigmas))


def _grain_profile_tensor(y: Tensor, residual: Tensor) -> np.ndarray:
    """`grain_profile(y, residual)` of [H, W] float32 tensors, on their device: the same sample, bands
    and medians (selections, as numpy's); only the [_BANDS + 1] medians and counts cross."""
    import torch

    from pipeline.film.torch_ops import to_numpy
    from pipeline.frame.tensor_ops import median

    band = ((y[::3, ::3] * _BANDS).to(torch.int32)).clamp(0, _BANDS - 1).reshape(-1)
    a = residual[::3, ::3].abs().reshape(-1)
    counts = to_numpy(torch.bincount(band, minlength=_BANDS))
    bands = [b for b in range(_BANDS) if counts[b] >= 64]
    got = to_numpy(torch.stack([median(a)] + [median(a[band == b]) for b in bands])).astype(np.float32)
    prof = np.full(_BANDS, float(1.4826 * got[0]), np.float64)
    for k, b in enumerate(bands):
        prof[b] = 1.4826 * float(got[1 + k])
    return prof


def _grain_size_tensor(grain: Tensor) -> float:
    """`grain_size` of an [H, W] float32 tensor: the medians (selections, as numpy's) in float32, the
    correlation in float64, as numpy's; only the correlation comes to the CPU."""
    import torch

    from pipeline.film.torch_ops import to_numpy
    from pipeline.frame.tensor_ops import median

    flat = grain.reshape(-1)
    s = 1.4826 * float(to_numpy(median((flat - median(flat)).abs())))
    r = (grain.clamp(-3 * s, 3 * s) if s > 0 else grain).to(torch.float64)
    r = r - r.mean()
    var = (r * r).mean()
    rho = ((r[:, 1:] * r[:, :-1]).mean() + (r[1:] * r[:-1]).mean()) / (2 * var)
    value = float(to_numpy(torch.where(var > 0, rho, torch.zeros_like(rho))))
    table, sigmas = _size_table()
    return float(np.interp(value, table, sigmas))


def _robust_std(x: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


def channel_grain(residual: np.ndarray) -> np.ndarray:
    """[4] float64: how the grain's channels relate, from what the reduction removed (`residual`,
    [..., 3] RGB): the mean correlation rho of the three pairs of channels, then each channel's
    grain std over luma's. Robust (edges and misaligned detail the reduction removed are
    outliers): each pair's rho = (s(a + b)^2 - s(a - b)^2) / (s(a + b)^2 + s(a - b)^2) with s
    the median-based std of channels brought to one strength. Monochrome grain: [1, 1, 1, 1]."""
    r = np.asarray(residual, np.float64).reshape(-1, 3)
    lum = _robust_std(r @ _LUMA)
    stds = np.array([_robust_std(r[:, i]) for i in range(3)])
    if lum <= 1e-9 or stds.min() <= 1e-9:
        return np.array([1.0, 1.0, 1.0, 1.0])
    z = r / stds
    rhos = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        plus, minus = _robust_std(z[:, i] + z[:, j]) ** 2, _robust_std(z[:, i] - z[:, j]) ** 2
        rhos.append((plus - minus) / max(plus + minus, 1e-12))
    return np.array([float(np.clip(np.mean(rhos), 0.0, 1.0)), *(stds / lum)])


def measure_grain(
    y: np.ndarray | Tensor,
    residual: np.ndarray | Tensor,
    difference: np.ndarray | Tensor,
    colour: np.ndarray | None = None,
    motions: Sequence[np.ndarray | None] = (),
) -> np.ndarray:
    """float32: the grain std (0..1) per brightness band of the cleaned luma `y`, its size (source
        px), how its channels relate (`colour`, from `channel_grain`; None: monochrome) and how the
        picture moved from the two frames before (`motions`, [2, 3] frame px -> that frame's px, None
        where there is none): what `pipeline.frame.grain.Regrain` puts back at output resolution, in
        that module's layout (`pipeline.frame.grain.pack`). `y`, `residual`, `difference` may be tensors
    (a torch `film.device`): they are measured on their device, only a ninth of `y` and `residual` crosses.

        The strength is what the reduction removed (`residual`): the grain it left plus this much is
        the grain there was. The size is measured on `difference` (the frame minus an aligned
        neighbour: two independent grain fields, spatially correlated as one is), not on the residual,
        whose per-pixel weights whiten it."""
    from pipeline.frame.grain import pack

    still = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    c = np.array([1.0, 1.0, 1.0, 1.0]) if colour is None else np.asarray(colour, np.float64)
    moved = [still if m is None else m for m in (*motions, None, None)[:2]]
    if is_tensor(y) and is_tensor(residual):
        profile = _grain_profile_tensor(y, residual)
    else:
        profile = grain_profile(np.asarray(y), np.asarray(residual))  # numpy already: the same arrays
    return pack(profile, grain_size(difference), float(c[0]), c[1:], moved)


def line_denoise(image: Any, sigma_levels: float) -> Any:
    """Bilateral filter: `sigma_levels` (8-bit levels) of colour difference still smoothed (a tensor
    is filtered on its device: pipeline.film.torch_ops.bilateral)."""
    import cv2

    from pipeline.film.torch_ops import bilateral

    if is_tensor(image):
        return bilateral(image, sigma_levels / 255.0, 2.0, 5)
    return np.asarray(cv2.bilateralFilter(image, 5, sigma_levels / 255.0, 2.0))


def quantise(image: np.ndarray, dtype: np.dtype, dither: bool, seed: int, index: int) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] to uint8 / uint16: rounded, or with triangular dither of +-1 level."""
    top = 255.0 if dtype == np.uint8 else 65535.0
    x = image * np.float32(top)
    if dither:
        rng = np.random.default_rng([seed, index, 1])
        x = x + (rng.random(x.shape, dtype=np.float32) - rng.random(x.shape, dtype=np.float32))
    return np.clip(np.rint(x), 0, top).astype(dtype)
