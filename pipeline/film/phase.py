"""Phase correlation in torch (torch.fft), as `cv2.phaseCorrelate` computes it, on the pictures' device.

The steps follow OpenCV's documented method (imgproc `phaseCorrelate`, `createHanningWindow`):
- each picture multiplied by the window (`hanning`: the square root of the product of a row and a
  column raised cosine, 0.5 (1 - cos(2 pi i / (n - 1)))), then zero-padded at its bottom and right to
  the DFT size OpenCV picks (`optimal_dft_size`: the smallest 2^a 3^b 5^c not below the size);
- the cross-power spectrum F1 conj(F2) divided by its magnitude (plus FLT_EPSILON, as OpenCV's
  spectrum division for float pictures), back to the picture domain;
- the zero shift moved to (size // 2) (OpenCV's `fftShift`), the highest value located (the first
  one in row order on a tie), and the
  sub-pixel peak taken as the weighted centroid of the 5 x 5 values around it (clipped at the
  array's edge); its sum is the response (1 for two identical pictures);
- the shift is the array's centre (size / 2) less that centroid: b(x) ~ a(x - d) (so, as OpenCV's,
  half a pixel off along an axis whose DFT size is odd).

One more fact of OpenCV's (the installed 5.0): a picture already of a DFT size (not padded) is
multiplied by the window *in place*, so the caller's array is left windowed; weave gives OpenCV
copies (`weave.shift_between`), and nothing here changes its inputs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

_FLT_EPSILON = 1.1920929e-07
_DBL_EPSILON = 2.220446049250313e-16
_BOX = 5  # the sub-pixel centroid's window


def optimal_dft_size(n: int) -> int:
    """`cv2.getOptimalDFTSize(n)`: the smallest 2^a 3^b 5^c >= n."""
    m = max(n, 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def hanning(h: int, w: int, device: str = "cpu") -> Tensor:
    """`cv2.createHanningWindow((w, h), cv2.CV_32F)` as an [h, w] float32 tensor (h, w >= 2)."""
    import torch

    def cosine(n: int) -> Tensor:
        i = torch.arange(n, dtype=torch.float64, device=device)
        return 0.5 * (1.0 - torch.cos(2.0 * math.pi * i / (n - 1)))

    return (cosine(h)[:, None] * cosine(w)[None, :]).to(torch.float32).sqrt()


def _centroid(corr: Tensor) -> Tensor:
    """[N, 3] float64 (x, y, sum) of the 5 x 5 weighted centroid around each [M, N'] picture's peak."""
    import torch

    n, rows, cols = corr.shape
    peak = corr.reshape(n, -1).argmax(dim=1)
    py, px = peak // cols, peak % cols
    r = torch.arange(-(_BOX // 2), _BOX // 2 + 1, device=corr.device)
    ys, xs = py[:, None] + r[None], px[:, None] + r[None]  # [N, 5]
    valid = ((ys >= 0) & (ys < rows))[:, :, None] & ((xs >= 0) & (xs < cols))[:, None, :]  # [N, 5, 5]
    yc, xc = ys.clamp(0, rows - 1), xs.clamp(0, cols - 1)
    batch = torch.arange(n, device=corr.device)[:, None, None]
    v = corr[batch, yc[:, :, None], xc[:, None, :]].to(torch.float64) * valid  # [N, 5, 5]
    total = v.sum(dim=(1, 2))
    cx = (v * xc[:, None, :].to(torch.float64)).sum(dim=(1, 2))
    cy = (v * yc[:, :, None].to(torch.float64)).sum(dim=(1, 2))
    return torch.stack([cx / (total + _DBL_EPSILON), cy / (total + _DBL_EPSILON), total], dim=1)


def phase_correlate(a: Tensor, b: Tensor, window: Tensor | None = None) -> Tensor:
    """[N, 3] float64 (dx, dy, response) of `cv2.phaseCorrelate(a[i], b[i], window)` for [N, h, w]
    (or [h, w]: [1, 3]) float tensors on one device: b(x) ~ a(x - d)."""
    import torch

    if a.ndim == 2:
        a, b = a[None], b[None]
    h, w = a.shape[-2:]
    rows, cols = optimal_dft_size(h), optimal_dft_size(w)
    if window is not None:
        a, b = a * window, b * window
    fa = torch.fft.rfft2(a.to(torch.float32), s=(rows, cols))  # zero-padded at the bottom and right
    fb = torch.fft.rfft2(b.to(torch.float32), s=(rows, cols))
    p = fa * fb.conj()
    m = p.abs()
    # OpenCV's idft is unscaled and its response divided by rows x cols: irfft2's 1 / (rows x cols)
    # scaling does both (the eps, relative to OpenCV's unscaled spectrum, is scaled alike)
    corr = torch.fft.irfft2(p * (m / (m * m + _FLT_EPSILON)), s=(rows, cols))
    corr = torch.roll(
        corr, shifts=(rows // 2, cols // 2), dims=(1, 2)
    )  # zero shift at (rows // 2, cols // 2)
    c = _centroid(corr)
    return torch.stack([cols / 2.0 - c[:, 0], rows / 2.0 - c[:, 1], c[:, 2]], dim=1)
