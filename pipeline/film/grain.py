"""Grain put back, line-preserving denoise for drawn pictures, and dithered quantisation.

- `add_grain`: after grain reduction ("regrain"), grain of the measured strength (per brightness
  band, from what the reduction removed) is synthesised and added: Gaussian noise softened to
  grain size, seeded by the frame index (segments agree; the pattern never repeats frame to frame).
- `line_denoise`: OpenCV's bilateral filter flattens colour areas and keeps line edges (cartoons).
- `quantise`: float pictures back to 8/16 bits, with triangular dither (seeded per frame) when asked,
  so smooth gradients and flat fills do not band.
"""

from __future__ import annotations

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


def add_grain(image: np.ndarray, profile: np.ndarray, seed: int, index: int, size: float = 0.7) -> np.ndarray:
    """`image` ([H, W, 3] float32) plus monochrome grain with std `profile` by brightness band."""
    import cv2

    from pipeline.film.window import luma

    rng = np.random.default_rng([seed, index])
    noise = rng.standard_normal(image.shape[:2], dtype=np.float32)
    if size > 0:
        blurred = np.asarray(cv2.GaussianBlur(noise, (0, 0), size), dtype=np.float32)
        noise = blurred / np.float32(max(float(blurred.std()), 1e-6))
    centres = (np.arange(_BANDS) + 0.5) / _BANDS
    amp = np.interp(luma(image), centres, profile).astype(np.float32)
    return np.clip(image + (noise * amp)[..., None], 0.0, 1.0)


def line_denoise(image: np.ndarray, sigma_levels: float) -> np.ndarray:
    """Bilateral filter: `sigma_levels` (8-bit levels) of colour difference still smoothed."""
    import cv2

    return np.asarray(cv2.bilateralFilter(image, 5, sigma_levels / 255.0, 2.0))


def quantise(image: np.ndarray, dtype: np.dtype, dither: bool, seed: int, index: int) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] to uint8 / uint16: rounded, or with triangular dither of +-1 level."""
    top = 255.0 if dtype == np.uint8 else 65535.0
    x = image * np.float32(top)
    if dither:
        rng = np.random.default_rng([seed, index, 1])
        x = x + (rng.random(x.shape, dtype=np.float32) - rng.random(x.shape, dtype=np.float32))
    return np.clip(np.rint(x), 0, top).astype(dtype)
