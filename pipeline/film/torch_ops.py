"""Film cleaning operations as torch code, the same on the CPU and on CUDA (`film.device`).

So far weave's correction (`film.weave`): the frame moved onto its window's smooth path. The shift
measurement (phase correlation), dust, scratches, deflicker and grain stay numpy/OpenCV.

`translate` is weave's `pipeline.film.weave.translate` (`cv2.warpAffine` with INTER_CUBIC, Keys'
a = -0.75, edges mirrored without repeating the edge pixel): the frame is padded by reflection
(BORDER_REFLECT_101) a few pixels more than the shift, so every cubic tap reads the pixel OpenCV's
reads, and sampled with `grid_sample`'s bicubic filter (the same kernel).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.frame.tensor_ops import reflect101


def translate_tensor(image: Any, d: tuple[float, float]) -> Any:
    """An [H, W, C] float tensor moved by d = (dx, dy) px (cubic; uncovered edges mirrored), in [0, 1]."""
    import torch

    h, w = image.shape[:2]
    pad = math.ceil(max(abs(d[0]), abs(d[1]))) + 2  # every cubic tap of every sample inside the pad
    dev = image.device
    rows = reflect101(torch.arange(-pad, h + pad, device=dev), h)
    cols = reflect101(torch.arange(-pad, w + pad, device=dev), w)
    padded = image.index_select(0, rows).index_select(1, cols)  # [H + 2p, W + 2p, C]
    ph, pw = h + 2 * pad, w + 2 * pad
    ys = torch.arange(h, dtype=torch.float64, device=dev) - d[1] + pad  # output y reads input y - dy
    xs = torch.arange(w, dtype=torch.float64, device=dev) - d[0] + pad
    gy = ((2 * ys + 1) / ph - 1)[:, None].expand(h, w)
    gx = ((2 * xs + 1) / pw - 1)[None, :].expand(h, w)
    grid = torch.stack([gx, gy], dim=-1)[None].to(image.dtype)  # [1, H, W, 2]
    planes = padded.permute(2, 0, 1)[None]  # [1, C, H + 2p, W + 2p]
    out = torch.nn.functional.grid_sample(planes, grid, "bicubic", "border", align_corners=False)[0]
    return out.permute(1, 2, 0).clamp(0.0, 1.0)


def translate(image: np.ndarray, d: np.ndarray, device: str = "cpu") -> np.ndarray:
    """`pipeline.film.weave.translate` in torch on `device`: [H, W, C] float32 in, same out."""
    import torch

    t = torch.tensor(np.asarray(image, np.float32), device=torch.device(device))
    flat = t[..., None] if t.ndim == 2 else t
    out = translate_tensor(flat, (float(d[0]), float(d[1])))
    out = out[..., 0] if t.ndim == 2 else out
    return np.asarray(out.cpu().numpy(), dtype=np.float32)
