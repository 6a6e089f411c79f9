"""Image operations compose needs, as torch code that is the same on the CPU and on CUDA.

Each follows the OpenCV call it replaces, so compose's figures do not move: `gaussian_blur` is
`cv2.GaussianBlur(x, (0, 0), sigma)` for float images (a ksize = round(8 sigma + 1) | 1 tap kernel,
borders reflected without repeating the edge pixel, BORDER_REFLECT_101, for any kernel size);
`warp_affine` is `cv2.warpAffine(..., flags=INTER_LINEAR)` with a constant-zero, replicated or
reflect-101 border (exact bilinear weights where OpenCV rounds coordinates to 1/32 px: values
differ by at most 1/64 px times the local gradient); `area_shrink` is `cv2.resize(..., INTER_AREA)`
when reducing (each output pixel the mean of the input area it covers, fractional pixels weighted).

Images are [H, W] or [H, W, C] float32 tensors (the frame's layout, channels last).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def reflect101(index: Tensor, n: int) -> Tensor:
    """Indices folded into [0, n) the way BORDER_REFLECT_101 does (gfedcb|abcdefgh|gfedcba)."""
    if n == 1:
        return index.clamp(0, 0)
    period = 2 * (n - 1)
    j = index.remainder(period)
    return (period - j).where(j >= n, j)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's float kernel for GaussianBlur with ksize (0, 0): [ksize] float64, sums to 1."""
    size = max(1, round(sigma * 8 + 1) | 1)
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return np.asarray(k / k.sum())


_SHIFT_TAPS = 31  # kernels up to this many taps run as shifted sums, longer ones as a banded matmul


@lru_cache(maxsize=64)
def _blur_matrix(n: int, sigma: float, device: str) -> Tensor:
    """[n, n] float32: the 1-D blur of n samples with reflect-101 borders folded into the matrix."""
    import torch

    kernel = gaussian_kernel(sigma)
    r = kernel.size // 2
    src = reflect101(torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :], n).numpy()  # [n, k]
    m = np.zeros((n, n), np.float64)
    np.add.at(m, (np.repeat(np.arange(n), kernel.size), src.ravel()), np.tile(kernel, n))
    return torch.as_tensor(m, dtype=torch.float32, device=torch.device(device))


def _blur_axis(planes: Tensor, sigma: float, dim: int) -> Tensor:
    """planes [N, H, W] blurred along dim 1 (rows) or 2 (columns), reflect-101 borders."""
    import torch

    n = planes.shape[dim]
    kernel = gaussian_kernel(sigma)
    if kernel.size > _SHIFT_TAPS or kernel.size // 2 >= 4 * n:
        m = _blur_matrix(n, sigma, str(planes.device))
        return m @ planes if dim == 1 else planes @ m.T
    r = kernel.size // 2
    padded = planes.index_select(dim, reflect101(torch.arange(-r, n + r, device=planes.device), n))
    out = padded.narrow(dim, 0, n) * float(kernel[0])
    for i in range(1, kernel.size):
        out.add_(padded.narrow(dim, i, n), alpha=float(kernel[i]))
    return out


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """`cv2.GaussianBlur(image, (0, 0), sigma)` of an [H, W] or [H, W, C] float tensor."""
    planes = (image[None] if image.ndim == 2 else image.permute(2, 0, 1)).contiguous()  # [N, H, W]
    out = _blur_axis(_blur_axis(planes, sigma, 2), sigma, 1)
    return out[0] if image.ndim == 2 else out.permute(1, 2, 0)


_BORDERS = {"constant": "zeros", "replicate": "border", "reflect101": "border"}


def warp_affine(image: Tensor, matrix: np.ndarray, size: tuple[int, int], border: str = "constant") -> Tensor:
    """`cv2.warpAffine(image, matrix, size, flags=INTER_LINEAR, borderMode=...)` for a float tensor
    [H, W] or [H, W, C]: `matrix` [2, 3] maps input pixel indices to output ones (OpenCV's
    convention), `size` is (w, h) of the output, border "constant" (0), "replicate" or "reflect101"
    (the sample position folded into the image first, which for bilinear taps is the same)."""
    import torch

    if border not in _BORDERS:
        raise ValueError(f"unknown border {border!r}")
    w, h = size
    inv = np.linalg.inv(np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]]))[:2]  # out -> in
    dev = image.device
    ih, iw = image.shape[:2]
    ys = torch.arange(h, dtype=torch.float64, device=dev)[:, None]
    xs = torch.arange(w, dtype=torch.float64, device=dev)[None, :]
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]  # [h, w] input column of each output pixel
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    if border == "reflect101":
        sx, sy = _fold(sx, iw), _fold(sy, ih)
    grid = torch.stack([(2 * sx + 1) / iw - 1, (2 * sy + 1) / ih - 1], dim=-1)  # align_corners=False
    planes = image[None, None] if image.ndim == 2 else image.permute(2, 0, 1)[None]  # [1, C, H, W]
    out = torch.nn.functional.grid_sample(
        planes, grid[None].to(image.dtype), "bilinear", _BORDERS[border], align_corners=False
    )[0]  # [C, h, w]
    return out[0] if image.ndim == 2 else out.permute(1, 2, 0)


def _fold(x: Tensor, n: int) -> Tensor:
    """Continuous positions folded into [0, n - 1] as BORDER_REFLECT_101 folds pixel indices."""
    if n == 1:
        return x.clamp(0, 0)
    period = 2.0 * (n - 1)
    j = x.remainder(period)
    return (period - j).where(j > n - 1, j)


@lru_cache(maxsize=32)
def _area_matrix(n: int, size: int, device: str) -> Tensor:
    """[size, n] sparse float32: output i averages the input over [i s, (i + 1) s), s = n / size
    (fractional samples weighted): about s + 1 non-zeros a row."""
    import torch

    s = n / size
    lo = np.arange(size)[:, None] * s
    j = np.arange(n)[None, :]
    cover = np.clip(np.minimum(lo + s, j + 1) - np.maximum(lo, j), 0, None) / s  # [size, n]
    dense = torch.as_tensor(cover, dtype=torch.float32)
    return dense.to_sparse().to(torch.device(device))


def _area_rows(x: Tensor, size: int) -> Tensor:
    """x [n, ...] reduced to `size` rows by area averaging."""
    import torch

    m = _area_matrix(x.shape[0], size, str(x.device))
    return torch.sparse.mm(m, x.reshape(x.shape[0], -1)).reshape(size, *x.shape[1:])


def area_shrink(image: Tensor, size: int) -> Tensor:
    """`cv2.resize(image, (size, size), interpolation=INTER_AREA)` of a square [S, S, C] tensor, size < S."""
    rows = _area_rows(image, size)  # [size, S, C]
    return _area_rows(rows.transpose(0, 1).contiguous(), size).transpose(0, 1)  # [size, size, C]


def median(values: Tensor) -> Tensor:
    """numpy's median of a 1-D tensor (the two middle values averaged for an even count), by selection."""
    import torch

    n = values.numel()
    lo = torch.kthvalue(values, (n + 1) // 2).values
    return lo if n % 2 else (lo + torch.kthvalue(values, n // 2 + 1).values) / 2


def robust_std(values: Tensor) -> float:
    """Standard deviation estimated from the median absolute deviation (edges barely move it)."""
    if values.numel() == 0:
        return 0.0
    v = values.reshape(-1).double()
    return float(1.4826 * median((v - median(v)).abs()))


def as_tensor(image: np.ndarray, device: str | torch.device) -> Tensor:
    """A float32 copy of a numpy image on `device` (never sharing the caller's memory). To CUDA,
    8-bit images move as they are, through pinned host memory, and become float32 there."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and image.dtype == np.uint8:
        host = torch.from_numpy(np.ascontiguousarray(image)).pin_memory()
        return host.to(dev, non_blocking=True).to(torch.float32)
    return torch.tensor(np.asarray(image, np.float32), device=dev)


def _lanczos_axis(x: Tensor, scale: int, dim: int, round_to: float | None) -> Tensor:
    """Polyphase Lanczos-3 along `dim` (0 rows, 1 columns) of an [H, W, C] float tensor, edges
    replicated (`pipeline.frame.upscale._upscale_axis`); each pass rounded and clipped to
    [0, round_to] for 8-bit pictures, as OpenCV's 8-bit filter2D does."""
    import torch

    from pipeline.frame.upscale import lanczos_phases

    n = x.shape[dim]
    phases = []
    for base, weights in lanczos_phases(scale):
        ks = range(-len(weights) // 2 + 1, len(weights) // 2 + 1)
        out = torch.zeros_like(x)
        for k, wk in zip(ks, weights, strict=True):
            taps = (torch.arange(n, device=x.device) + base + k).clamp(0, n - 1)
            out = out + x.index_select(dim, taps) * float(wk)
        if round_to is not None:
            out = torch.round(out).clamp_(0, round_to)
        phases.append(out)
    stacked = torch.stack(phases, dim=dim + 1)  # [H, W, s, C] or [H, s, W, C]
    shape = list(x.shape)
    shape[dim] *= scale
    return stacked.reshape(shape)


def lanczos_upscale(image: Tensor, scale: int) -> Tensor:
    """`pipeline.frame.upscale.upscale(image, scale, "lanczos")` for an integer `scale` of an
    [H, W, C] uint8 / int32 (16-bit values) / float32 tensor on its device, the same dtype out."""
    import torch

    x = image.to(torch.float32)
    eight = image.dtype == torch.uint8
    x = _lanczos_axis(x, scale, 1, 255.0 if eight else None)
    x = _lanczos_axis(x, scale, 0, 255.0 if eight else None)
    if eight:
        return x.to(torch.uint8)
    if image.dtype == torch.float32:
        return x
    return torch.round(x).clamp_(0, 65535).to(image.dtype)


def upscale_on(image: np.ndarray, scale: float, method: str, device: str) -> Tensor:
    """The classical upscale of a uint8 / uint16 frame as a tensor on `device` (uint8, or int32 holding
    16-bit values): integer-factor Lanczos runs there; other methods and factors on the CPU
    (`pipeline.frame.upscale.upscale`), then sent."""
    import torch

    from pipeline.frame.upscale import upscale

    dev = torch.device(device)
    wide = image.dtype == np.uint16
    if method == "lanczos" and float(scale).is_integer() and scale > 1 and image.ndim == 3:
        src = torch.from_numpy(np.ascontiguousarray(image.astype(np.int32) if wide else image)).to(dev)
        return lanczos_upscale(src, int(scale))
    up = np.asarray(upscale(image, scale, method))
    return torch.from_numpy(np.ascontiguousarray(up.astype(np.int32) if wide else up)).to(dev)
