"""The search loss, per face: downscaled-output distance to the target, GEOCROSS, and the temporal pull.

Every term is a vector [B] (one value per face) so that faces in a batch are independent: summing the
vector for backward gives each face exactly its own gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# BT.601 luma weights: archival black-and-white footage and its transfers were made for SD television
_LUMA = (0.299, 0.587, 0.114)


def luminance(img: torch.Tensor) -> torch.Tensor:
    """img [B, 3, H, W] -> [B, 1, H, W] luma."""
    w = torch.tensor(_LUMA, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True)


def downscale(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of img [B, C, H, W] to size (h, w): any factor, not only powers of two.

    The antialias filter widens with the factor (like an area average), so a 1024 -> 37 px reduction
    integrates the whole footprint of each target pixel instead of sampling a few.
    """
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=size, mode="bicubic", antialias=True, align_corners=False)


def geocross(v: torch.Tensor) -> torch.Tensor:
    """PULSE's GEOCROSS: mean squared geodesic angle between a face's per-layer latents.

    v [B, L, D] (Gaussianised latents) -> [B]. Scaled as PULSE scales it (x D / 8), so PULSE's weight of
    0.05 means the same here. Zero for a single layer.
    """
    B, L, D = v.shape
    if L == 1:
        return v.new_zeros(B)
    x = v.unsqueeze(1)  # [B, 1, L, D]
    y = v.unsqueeze(2)  # [B, L, 1, D]
    a = ((x - y).pow(2).sum(-1) + 1e-9).sqrt()  # [B, L, L]
    b = ((x + y).pow(2).sum(-1) + 1e-9).sqrt()
    angle = 2 * torch.atan2(a, b)
    return (angle.pow(2) * D).mean((1, 2)) / 8.0


def pixel_losses(lr: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lr, target [B, C, h, w] -> (mse [B], mean absolute error [B])."""
    diff = lr - target
    return diff.pow(2).mean((1, 2, 3)), diff.abs().mean((1, 2, 3))


def pull(
    v: torch.Tensor, v_prev: torch.Tensor, noise: list[torch.Tensor], noise_prev: list[torch.Tensor]
) -> torch.Tensor:
    """Mean squared distance to the previous frame's latents and optimised noise maps -> [B]."""
    d = (v - v_prev).pow(2).mean((1, 2))
    for n, p in zip(noise, noise_prev, strict=True):
        d = d + (n - p).pow(2).mean((1, 2, 3))
    return d


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for images in [0, 1]; capped at 100 dB for a perfect match."""
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def bound_psnr(eps: float) -> float:
    """The PSNR a frame reaches exactly at the bound mse = eps."""
    return 10 * math.log10(1.0 / eps)
