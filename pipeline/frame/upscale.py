"""Whole-frame upscaling with a classical resampler (a learned model can take this place later)."""

from __future__ import annotations

import numpy as np

# OpenCV interpolation flags by name. Lanczos (8x8 taps) is the sharpest of OpenCV's classical
# kernels with little ringing; area averages and is meant for shrinking.
METHODS = ("lanczos", "bicubic", "area", "nearest")


def _flag(method: str) -> int:
    import cv2

    flags = {
        "lanczos": cv2.INTER_LANCZOS4,
        "bicubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
        "nearest": cv2.INTER_NEAREST,
    }
    try:
        return flags[method]
    except KeyError:
        raise ValueError(f"unknown upscale method {method!r}; choose one of {', '.join(METHODS)}") from None


def upscale(image: np.ndarray, scale: float, method: str = "lanczos") -> np.ndarray:
    """Resize `image` ([H, W] or [H, W, C]; uint8, uint16 or float32) by `scale`, keeping its dtype.

    The output is round(H * scale) x round(W * scale). Integer images are clipped to their range
    (Lanczos and bicubic overshoot at edges; OpenCV saturates integer outputs itself).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an [H, W] or [H, W, C] image, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"unsupported dtype {image.dtype}; use uint8, uint16 or float32")
    flag = _flag(method)
    if scale == 1:
        return image
    import cv2

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 takes (width, height)
    out = cv2.resize(np.ascontiguousarray(image), size, interpolation=flag)  # [H', W'(, C)]
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out
