"""Grain measured for regrain, line-preserving denoise for drawn pictures, and dithered quantisation.

- `measure_grain`: with grain reduction ("regrain"), the grain of each frame is measured (strength
  per brightness band, from what the reduction removed, and size); compose puts grain of that
  strength and size back at output resolution, after the upscale (`pipeline.frame.grain`).
- `line_denoise`: OpenCV's bilateral filter flattens colour areas and keeps line edges (cartoons).
- `quantise`: float pictures back to 8/16 bits, with triangular dither (seeded per frame) when asked,
  so smooth gradients and flat fills do not band.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

_BANDS = 8  # brightness bands the grain strength is measured in


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


def grain_size(grain: np.ndarray) -> float:
    """The grain's size: the blur (source px) of white noise whose neighbouring pixels correlate as
    those of `grain` ([H, W], grain and little else) do; outliers (edges, misaligned detail) are
    clipped at 3 robust std devs first."""
    s = 1.4826 * float(np.median(np.abs(grain - np.median(grain))))
    r = np.clip(grain, -3 * s, 3 * s) if s > 0 else grain
    rho, sigmas = _size_table()
    return float(np.interp(_neighbour_correlation(np.asarray(r, np.float64)), rho, sigmas))


def measure_grain(y: np.ndarray, residual: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """[_BANDS + 1] float32: the grain std (0..1) per brightness band of the cleaned luma `y`, then
    its size (source px): what `pipeline.frame.grain.Regrain` puts back at output resolution.

    The strength is what the reduction removed (`residual`): the grain it left plus this much is
    the grain there was. The size is measured on `difference` (the frame minus an aligned
    neighbour: two independent grain fields, spatially correlated as one is), not on the residual,
    whose per-pixel weights whiten it."""
    return np.append(grain_profile(y, residual), grain_size(difference)).astype(np.float32)


def line_denoise(image: Any, sigma_levels: float) -> Any:
    """Bilateral filter: `sigma_levels` (8-bit levels) of colour difference still smoothed (a tensor
    is filtered on its device: pipeline.film.torch_ops.bilateral)."""
    import cv2

    from pipeline.film.torch_ops import bilateral, is_tensor

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
