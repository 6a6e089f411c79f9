"""Whole-frame upscaling: a classical resampler, or a learned model (`make_upscaler`, pipeline.frame.sr).

"lanczos" is Lanczos-3 (6 taps, the kernel ffmpeg and most editors default to). For integer
factors, the usual case, it runs as a polyphase filter: every output pixel of phase p (its position
within the s x s block it falls in) uses the same 6 weights, so the image is filtered once per phase
with OpenCV's vectorised filter2D, horizontally then vertically, and the phases are interleaved.
That is about ten times cheaper than cv2.resize's own Lanczos (8 taps, not vectorised), which at
1080p cost more CPU than the x264 encode. Other factors fall back to cv2.resize.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import CheckpointError
from pipeline.frame.sr import cached_upscaler

if TYPE_CHECKING:
    from pipeline.config import Config

METHODS = ("lanczos", "bicubic", "area", "nearest")
_LANCZOS_A = 3  # lobes; taps = 2a


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


def lanczos_phases(scale: int, a: int = _LANCZOS_A) -> list[tuple[int, np.ndarray]]:
    """Per output phase p: (offset of its first tap's centre input pixel, [2a] normalised weights).

    Output pixel s*j + p sits at input coordinate x = j + (p + 0.5)/s - 0.5 (pixel centres aligned,
    as cv2.resize and ffmpeg do). With base = floor(x) and f = x - base, its value is
    sum_k w_k * in[base + k] for k = -a+1 .. a, w_k = L(k - f), L(t) = sinc(t) sinc(t/a).
    """
    phases = []
    for p in range(scale):
        x = (p + 0.5) / scale - 0.5
        base = math.floor(x)
        f = x - base
        t = np.arange(-a + 1, a + 1, dtype=np.float64) - f  # [2a] distances to the taps
        w = np.sinc(t) * np.sinc(t / a)
        phases.append((base, (w / w.sum()).astype(np.float32)))
    return phases


def _upscale_axis(image: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Polyphase Lanczos along `axis` (1 = width, 0 = height) of an [H, W, C] image, same dtype.

    filter2D rounds and saturates 8-bit outputs itself (Lanczos overshoots at edges), so no float
    copy of the frame is made: each pass rounds and clips, as a hardware scaler's would.
    """
    import cv2

    a = _LANCZOS_A
    phases = []
    for base, weights in lanczos_phases(scale, a):
        # filter2D: dst(x) = sum_t kernel[t] * src(x + t - anchor); we need src(j + base + k), k = t - a + 1.
        anchor = a - 1 - base
        kernel = weights[None, :] if axis == 1 else weights[:, None]  # [1, 2a] or [2a, 1]
        anchor_xy = (anchor, 0) if axis == 1 else (0, anchor)
        phase = cv2.filter2D(image, -1, kernel, anchor=anchor_xy, borderType=cv2.BORDER_REPLICATE)
        phases.append(phase.reshape(image.shape))  # cv2 drops a single channel axis
    h, w, c = image.shape
    if axis == 1:
        return np.stack(phases, axis=2).reshape(h, w * scale, c)  # [H, W, s, C] -> [H, W*s, C]
    return np.stack(phases, axis=1).reshape(h * scale, w, c)  # [H, s, W, C] -> [H*s, W, C]


def _lanczos_integer(image: np.ndarray, scale: int) -> np.ndarray:
    if image.dtype == np.uint16:
        # OpenCV's 16-bit filter2D is not vectorised: filter in float and convert once at the end.
        work = _lanczos_integer(image.astype(np.float32), scale)
        return np.clip(np.rint(work, out=work), 0, 65535, out=work).astype(np.uint16)
    work = _upscale_axis(image, scale, axis=1)  # [H, W*s, C]
    return _upscale_axis(work, scale, axis=0)  # [H*s, W*s, C]


def upscale(image: np.ndarray, scale: float, method: str = "lanczos") -> np.ndarray:
    """Resize `image` ([H, W] or [H, W, C]; uint8, uint16 or float32) by `scale`, keeping its dtype.

    The output is round(H * scale) x round(W * scale). Integer images are clipped to their range
    (Lanczos and bicubic overshoot at edges; 8-bit Lanczos after each of its two passes); float
    images are not.
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
    if method == "lanczos" and float(scale).is_integer() and image.ndim == 3 and image.shape[2] <= 4:
        return _lanczos_integer(np.ascontiguousarray(image), int(scale))
    import cv2

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 takes (width, height)
    out = cv2.resize(np.ascontiguousarray(image), size, interpolation=flag)  # [H', W'(, C)]
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when torch sees a GPU, else "cpu"; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_upscaler(cfg: Config, device: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The whole-frame upscaler `cfg.upscale` asks for: `up(image) -> image * scale`, dtype kept.

    With `upscale.model` a learned model (pipeline.frame.sr, loaded once per process and device: on
    the worker's GPU when `run.device` is "auto" and the worker sees one, there `upscale.batch` frames
    per forward pass through its `many`), otherwise the classical `upscale.method`. `device` overrides
    `run.device`.
    """
    u = cfg.upscale
    if not u.model:
        return functools.partial(upscale, scale=u.scale, method=u.method)

    path = Path(u.model).expanduser()
    if not path.is_file():
        raise CheckpointError(path, "no such file (upscale.model)")
    dev = resolve_device(device or cfg.run.device)
    batch = u.batch if dev.startswith("cuda") else 1  # batched passes are slower on a CPU (docs/measured.md)
    mtime = path.stat().st_mtime_ns
    return cached_upscaler(
        str(path.resolve()), mtime, u.scale, dev, u.tile, u.tile_overlap, batch, u.tile_memory
    )
