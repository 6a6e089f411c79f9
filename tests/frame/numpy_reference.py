"""Today's numpy consistency projection (pipeline.frame.project before it moved to torch), kept only
as the reference the torch code is checked against."""

from __future__ import annotations

import numpy as np

from pipeline.frame.project import Projection, Window, _back_projector


def _apply(wy: np.ndarray, wx: np.ndarray, x: np.ndarray) -> np.ndarray:
    """wy @ x @ wx.T on each channel of x [a, b, C] -> [wy rows, wx rows, C]."""
    a, b, c = x.shape
    rows = (wy @ x.reshape(a, b * c)).reshape(wy.shape[0], b, c)  # [wy rows, b, C]
    return np.matmul(wx, rows)  # [wy rows, wx rows, C]: wx applied to each row's [b, C]


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
) -> Projection:
    """Back-project the low-resolution residual until the region's downscale equals the source.

    Each step: residual r = source - downscale(out) on the constrained pixels, correction
    pinv(D) r (the minimum-norm image with that downscale), applied weighted by `hr_mask`, then the
    output is clipped to [0, 1] (the clip is a second convex set; alternating keeps both).
    """
    (y0, y1), (x0, x1) = win.ly, win.lx
    (a0, a1), (b0, b1) = win.hy, win.hx
    # float32 inside the loop: twice as fast, and far finer than any output's quantisation.
    f32 = np.float32
    src = np.asarray(source[y0:y1, x0:x1], f32)
    wy, wx = win.wy.astype(f32), win.wx.astype(f32)
    py, px = (_back_projector(w, damping).astype(f32) for w in (win.wy, win.wx))  # [hr, lr]
    region = np.asarray(out[a0:a1, b0:b1], f32)
    m_h = np.asarray(hr_mask, f32)[..., None]
    m_l = np.asarray(lr_mask, f32)[..., None]
    weight = lr_mask.astype(np.float64)

    def psnr_of(r: np.ndarray) -> float:
        mse = float(
            ((r.astype(np.float64) ** 2).mean(axis=2) * weight).sum() / max(float(weight.sum()), 1e-9)
        )
        return 100.0 if mse <= 1e-10 else 10.0 * float(np.log10(1.0 / mse))

    residual = src - _apply(wy, wx, region)
    before = after = psnr_of(residual)
    taken = 0
    while taken < steps and after < target_db:
        region = np.clip(region + m_h * _apply(py, px, residual * m_l), 0.0, 1.0)
        residual = src - _apply(wy, wx, region)
        after = psnr_of(residual)
        taken += 1
    if after < floor_db and damping > 0:
        # Damped steps left too much (footage that is mostly fine grain or noise): exact steps until
        # the floor is reached, amplified grain being the lesser evil than a broken promise.
        py, px = (_back_projector(w, 0.0).astype(f32) for w in (win.wy, win.wx))
        while taken < 2 * steps and after < floor_db:
            region = np.clip(region + m_h * _apply(py, px, residual * m_l), 0.0, 1.0)
            residual = src - _apply(wy, wx, region)
            after = psnr_of(residual)
            taken += 1
    out[a0:a1, b0:b1] = region.astype(out.dtype)
    return Projection(out, before, after, taken)
