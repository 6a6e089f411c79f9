"""Film cleaning operations as torch code, the same on the CPU and on CUDA (`film.device`).

With a torch device the working picture of every stage (`Work.image`) is an [H, W, 3] float32
tensor on that device, from the decoded frame to the quantised result: the per-pixel work (gains,
gain fields, median and box filters, Sobel, dilation, warps, fills, the temporal average) runs
there. What a stage *decides* from cheap statistics stays numpy/OpenCV on the CPU, fed with small
copies made on the device (64-px brightness copies, 32 x 24 thumbnails, the 8-bit luma that phase
correlation and optical flow read, a scratch's columns, a speck candidate's surroundings).

Each operation follows the OpenCV call it replaces (the tests state by how much they may differ):
- `translate`: weave's `cv2.warpAffine(INTER_CUBIC, BORDER_REFLECT_101)`: the frame is padded by
  reflection a few pixels more than the shift, so every cubic tap reads the pixel OpenCV's reads, and
  sampled with `grid_sample`'s bicubic filter (the same kernel, a = -0.75);
- `area_resize`: `cv2.resize(INTER_AREA)` when reducing (each output pixel the mean of the area it
  covers); `bilinear_resize`: `cv2.resize(INTER_LINEAR)` (half-pixel centres, edges clamped);
- `gray8`: `cvtColor(RGB2GRAY)` of the frame rounded to 8 bits, in OpenCV's fixed point;
- `median_blur`: `cv2.medianBlur` of an 8-bit picture (edges replicated);
- `box3`, `sobel`: `cv2.blur(3 x 3)`, `cv2.Sobel(ksize=3)` with reflect-101 borders;
- `remap`: `cv2.remap(INTER_LINEAR, BORDER_REPLICATE)` with exact bilinear weights (OpenCV rounds
  them to 1/32 px);
- `dilate3`: `cv2.dilate` with a 3 x 3 square.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pipeline.frame.tensor_ops import _area_rows, reflect101

if TYPE_CHECKING:
    from torch import Tensor
    from typing_extensions import TypeIs


def is_tensor(image: Tensor | np.ndarray) -> TypeIs[Tensor]:
    """Whether a working picture is a torch tensor (a torch `film.device`) rather than numpy."""
    return not isinstance(image, np.ndarray)


# Bytes brought from tensors to numpy by `to_numpy`, by what they were for: the one way film
# cleaning's pictures leave their device (tests/film/test_host_traffic.py counts them).
HOST_BYTES: dict[str, int] = {}


def to_numpy(x: Tensor | np.ndarray, why: str = "measure") -> np.ndarray:
    """A tensor (or array) as a numpy array on the CPU; a tensor's bytes are counted in
    `HOST_BYTES[why]` ("frame": a cleaned frame handed out; else what a stage reads on the CPU)."""
    if isinstance(x, np.ndarray):
        return x
    out = np.asarray(x.detach().cpu().numpy())
    HOST_BYTES[why] = HOST_BYTES.get(why, 0) + out.nbytes
    return out


def mask_to_numpy(mask: Tensor) -> np.ndarray:
    """An [H, W] bool tensor as a numpy bool array, packed to 8 pixels a byte on its device first (an
    eighth of the bytes cross)."""
    import torch

    h, w = mask.shape
    flat = mask.reshape(-1)
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % 8)).reshape(-1, 8).to(torch.uint8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=mask.device)
    packed = (flat * weights).sum(dim=1, dtype=torch.uint8)
    bits = np.unpackbits(to_numpy(packed, "mask"))[: h * w]
    return bits.reshape(h, w).astype(bool)


def cut(
    pictures: list[Tensor], rects: list[tuple[int, int, int, int]], fill: float
) -> list[list[np.ndarray]]:
    """The regions `rects` ((y0, y1, x0, x1), frame px; they may reach past the frame, where `fill` is
    read) of each [H, W] or [H, W, C] picture, cut on the device and brought over in one transfer:
    [rect][picture] numpy float32 arrays."""
    import torch

    h, w = pictures[0].shape[:2]
    idx, ok, shapes = [], [], []
    for y0, y1, x0, x1 in rects:
        ys, xs = np.arange(y0, y1), np.arange(x0, x1)
        inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
        idx.append((np.clip(ys, 0, h - 1)[:, None] * w + np.clip(xs, 0, w - 1)[None, :]).ravel())
        ok.append(inside.ravel())
        shapes.append((y1 - y0, x1 - x0))
    at = torch.as_tensor(np.concatenate(idx).astype(np.int64), device=pictures[0].device)
    columns = [p.reshape(h * w, -1) for p in pictures]
    got = to_numpy(torch.cat([c.index_select(0, at) for c in columns], dim=1), "patches")
    got = np.where(np.concatenate(ok)[:, None], got, np.float32(fill))
    widths = np.cumsum([0, *(c.shape[1] for c in columns)])
    out, start = [], 0
    for (rh, rw), p_idx in zip(shapes, idx, strict=True):
        rows = got[start : start + p_idx.size]
        start += p_idx.size
        out.append(
            [
                rows[:, widths[k] : widths[k + 1]].reshape(rh, rw, -1)[..., 0]
                if p.ndim == 2
                else rows[:, widths[k] : widths[k + 1]].reshape(rh, rw, -1)
                for k, p in enumerate(pictures)
            ]
        )
    return out


def working(image: Tensor | np.ndarray, device: str) -> Tensor:
    """[H, W, 3] float32 tensor in [0, 1] on `device` of a decoded uint8 / uint16 frame (sent as
    integers: a quarter / half of the bytes), the same values as the numpy chain's `image / top`. A
    frame already on a device (a uint8 tensor, or int32 holding 16-bit values) is converted there."""
    import torch

    if not isinstance(image, np.ndarray):
        peak = 255.0 if image.dtype == torch.uint8 else 65535.0
        return image.to(torch.device(device)).to(torch.float32) / peak
    top = 255.0 if image.dtype == np.uint8 else 65535.0
    src = np.ascontiguousarray(image if image.dtype == np.uint8 else image.astype(np.int32))
    t = torch.from_numpy(src).to(torch.device(device), non_blocking=True)
    return t.to(torch.float32) / top


def frame_dtype(image: Tensor | np.ndarray) -> np.dtype:
    """The numpy dtype a decoded frame (an array, or a tensor from `working`'s inputs) is handed out in."""
    import torch

    if isinstance(image, np.ndarray):
        return image.dtype
    return np.dtype(np.uint8) if image.dtype == torch.uint8 else np.dtype(np.uint16)


def quantised(image: Tensor, dtype: np.dtype) -> np.ndarray:
    """`pipeline.film.grain.quantise` without dither, on the device: rounded (half to even, as
    numpy's rint), clipped, then sent back as integers."""
    import torch

    top = 255.0 if dtype == np.uint8 else 65535.0
    q = torch.round(image * top).clamp_(0, top)
    return to_numpy(q.to(torch.uint8 if dtype == np.uint8 else torch.int32), "frame").astype(
        dtype, copy=False
    )


def luma(image: Tensor) -> Tensor:
    """[H, W] Rec.601 luma of an [H, W, 3] float tensor (`cv2.COLOR_RGB2GRAY` for float pictures)."""
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def gray8_tensor(image: Tensor) -> Tensor:
    """`pipeline.film.window.gray8` of a tensor, as an [H, W] uint8 tensor on its device: each channel
    rounded to 8 bits, then OpenCV's fixed-point RGB2GRAY (R 9798, G 19235, B 3735 in 1/32768, rounded)."""
    import torch

    q = torch.floor((image * 255.0 + 0.5).clamp_(0, 255)).to(torch.int32)
    return rgb8_to_gray8(q)


def rgb8_to_gray8(q: Tensor) -> Tensor:
    """`cv2.cvtColor(q, COLOR_RGB2GRAY)` of an [H, W, 3] integer tensor of 8-bit values, uint8."""
    import torch

    q = q.to(torch.int32)
    return ((q[..., 0] * 9798 + q[..., 1] * 19235 + q[..., 2] * 3735 + 16384) >> 15).to(torch.uint8)


def gray8(image: Tensor) -> np.ndarray:
    """`gray8_tensor` as a numpy [H, W] uint8."""
    return to_numpy(gray8_tensor(image))


def area_resize8(image: Tensor, size: tuple[int, int]) -> Tensor:
    """`cv2.resize(image, size, interpolation=INTER_AREA)` of an [H, W] uint8 tensor: the area means
    rounded to the nearest level (OpenCV's saturating cast), uint8."""
    import torch

    mean = area_resize(image.to(torch.float32), size)
    return torch.round(mean).clamp_(0, 255).to(torch.uint8)


def area_resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """`cv2.resize(image, size=(w, h), interpolation=INTER_AREA)` of an [H, W] or [H, W, C] float
    tensor, w <= W and h <= H."""
    w, h = size
    rows = _area_rows(image, h) if image.shape[0] != h else image
    if image.shape[1] == w:
        return rows
    cols = _area_rows(rows.transpose(0, 1).contiguous(), w)
    return cols.transpose(0, 1)


def bilinear_resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """`cv2.resize(image, size=(w, h), interpolation=INTER_LINEAR)` of an [h0, w0] or [h0, w0, C] float
    tensor (half-pixel centres; samples beyond the edge take the edge pixel)."""
    import torch

    w, h = size
    planes = image[None, None] if image.ndim == 2 else image.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(planes, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out[0] if image.ndim == 2 else out.permute(1, 2, 0)


def median_rows(x: Tensor) -> Tensor:
    """numpy's `np.median(x, axis=0)` of a 2-D tensor (the two middle values averaged when even)."""
    n = x.shape[0]
    s = x.sort(dim=0).values
    return s[(n - 1) // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


_MEDIAN_CHUNK = 1 << 24  # window values held at once by `median_blur` (memory, not results)


def median_blur(y8: Tensor, k: int, row_step: int = 1, cols: Tensor | None = None) -> Tensor:
    """`cv2.medianBlur(y8, k)` of an [H, W] uint8 tensor (k odd; edges replicated), uint8, at every
    `row_step`-th row and at the columns `cols` (a 1-D index tensor; None: all): [ceil(H / step), n]."""
    import torch

    r = k // 2
    h, w = y8.shape
    dev = y8.device
    rows = torch.arange(-r, h + r, device=dev).clamp(0, h - 1)
    padded = y8.index_select(0, rows)  # [H + 2r, W]
    if cols is None:
        cols = torch.arange(w, device=dev)
    taps = (cols[:, None] + torch.arange(-r, r + 1, device=dev)[None, :]).clamp(0, w - 1)  # [n, k]
    n = taps.shape[0]
    out_rows = range(0, h, row_step)
    out = torch.empty((len(out_rows), n), dtype=y8.dtype, device=dev)
    per_row = n * k * k
    step = max(1, _MEDIAN_CHUNK // per_row)  # output rows per chunk
    for i0 in range(0, len(out_rows), step):
        i1 = min(len(out_rows), i0 + step)
        y0, y1 = out_rows[i0], out_rows[i1 - 1]
        band = padded[y0 : y1 + 2 * r + 1]  # the rows their windows read
        windows = band[:, taps].unfold(0, k, row_step)  # [i1 - i0, n, k, k]: window rows last
        out[i0:i1] = windows.reshape(i1 - i0, n, k * k).median(dim=-1).values  # k * k odd: the middle
    return out


def _reflect_pad(planes: Tensor, r: int) -> Tensor:
    """[N, C, H, W] padded by r on each side the BORDER_REFLECT_101 way."""
    import torch

    h, w = planes.shape[-2:]
    rows = reflect101(torch.arange(-r, h + r, device=planes.device), h)
    cols = reflect101(torch.arange(-r, w + r, device=planes.device), w)
    return planes.index_select(-2, rows).index_select(-1, cols)


def _planes(image: Tensor) -> Tensor:
    return image[None, None] if image.ndim == 2 else image.permute(2, 0, 1)[None]


def _unplanes(out: Tensor, ndim: int) -> Tensor:
    return out[0, 0] if ndim == 2 else out[0].permute(1, 2, 0)


def box3(image: Tensor) -> Tensor:
    """`cv2.blur(image, (3, 3))` of an [H, W] or [H, W, C] float tensor (reflect-101 borders)."""
    import torch

    out = torch.nn.functional.avg_pool2d(_reflect_pad(_planes(image), 1), 3, stride=1)
    return _unplanes(out, image.ndim)


def sobel(image: Tensor) -> tuple[Tensor, Tensor]:
    """(`cv2.Sobel(image, CV_32F, 1, 0, ksize=3)`, the same for y) of an [H, W, C] float tensor."""
    import torch

    planes = _planes(image)
    c = planes.shape[1]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device)
    weights = torch.stack([kx, kx.T])[:, None].repeat(c, 1, 1, 1).to(image.dtype)  # [2C, 1, 3, 3]
    g = torch.nn.functional.conv2d(_reflect_pad(planes, 1), weights, groups=c)  # [1, 2C, H, W]
    return _unplanes(g[:, 0::2], image.ndim), _unplanes(g[:, 1::2], image.ndim)


def dilate3(mask: Tensor) -> Tensor:
    """`cv2.dilate(mask, ones((3, 3)))` of an [H, W] bool tensor."""
    import torch

    m = mask[None, None].to(torch.float32)
    return torch.nn.functional.max_pool2d(m, 3, stride=1, padding=1)[0, 0] > 0


def remap(image: Tensor, mx: Tensor, my: Tensor) -> Tensor:
    """`cv2.remap(image, mx, my, INTER_LINEAR, borderMode=BORDER_REPLICATE)` of an [H, W, C] float
    tensor at the [h, w] sample positions (input pixel indices) `mx`, `my`."""
    import torch

    ih, iw = image.shape[:2]
    grid = torch.stack([(2 * mx + 1) / iw - 1, (2 * my + 1) / ih - 1], dim=-1)[None].to(image.dtype)
    planes = image.permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(planes, grid, "bilinear", "border", align_corners=False)[0]
    return out.permute(1, 2, 0)


def translate_tensor(image: Tensor, d: tuple[float, float]) -> Tensor:
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
    return to_numpy(out).astype(np.float32, copy=False)


def as_device_array(values: np.ndarray, like: Tensor) -> Tensor:
    """A small numpy array (gains, a field) as a float32 tensor on `like`'s device."""
    import torch

    return torch.as_tensor(np.asarray(values, np.float32), device=like.device)


def bilateral(image: Tensor, sigma_color: float, sigma_space: float, d: int) -> Tensor:
    """`cv2.bilateralFilter(image, d, sigma_color, sigma_space)` of an [H, W, C] float tensor: each
    pixel the mean of the disc of radius d // 2 around it (reflect-101 borders), weighted by
    exp(-r^2 / 2 sigma_space^2) and by exp(-L^2 / 2 sigma_color^2) with L the sum over channels of the
    absolute differences (OpenCV reads the colour weight from a fine table, this computes it)."""
    import torch

    r = d // 2
    h, w = image.shape[:2]
    centre = image.permute(2, 0, 1)  # [C, H, W]
    padded = _reflect_pad(centre[None], r)[0]
    num = torch.zeros_like(centre)
    den = centre.new_zeros((h, w))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r:
                continue
            near = padded[:, r + dy : r + dy + h, r + dx : r + dx + w]
            dist = (near - centre).abs().sum(dim=0)
            space = math.exp(-0.5 * (dy * dy + dx * dx) / sigma_space**2)
            wt = (dist * dist * (-0.5 / sigma_color**2)).exp() * space
            num += near * wt
            den += wt
    return (num / den).permute(1, 2, 0)
