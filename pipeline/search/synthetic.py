"""A world with a known answer: a seeded generator's face moving smoothly, rendered and downscaled.

The targets are the truth downscaled (optionally blurred and noisy); the truth is the full-resolution
render. With noise inputs of realistic strength and a strong downscale the high-resolution answer is
ambiguous, as in real footage, so the evaluation separates methods by steadiness, not by luck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.search.loss import downscale


@dataclass
class SyntheticTrack:
    truth: np.ndarray  # [T, R, R, 3] float32 in [0, 1]: the true high-resolution frames
    crops: list[np.ndarray]  # T x [s, s, 3] float32 in [0, 1]: the low-resolution targets
    ws: torch.Tensor  # [T, num_ws, w_dim]: the true latents


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    omega = torch.arccos((a / a.norm() * b / b.norm()).sum().clamp(-1, 1))
    if float(omega) < 1e-6:
        return a
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.no_grad()
def make_track(
    G: torch.nn.Module,
    *,
    frames: int,
    scale: int,
    seed: int,
    keyframe_every: int = 12,
    motion: float = 0.35,
    blur_sigma: float = 0.0,
    noise_sigma: float = 0.0,
) -> SyntheticTrack:
    """A true latent path and its targets.

    The path walks in z by great-circle steps: every `keyframe_every` frames it heads for a new point
    `motion` of the way from the start towards a fresh random z (0 = a still face, 1 = a new face per
    keyframe), smoothly in between. Noise inputs are fixed for the whole track (one person's texture).
    Targets: optional Gaussian blur (sigma in high-resolution px), antialiased downscale by `scale`,
    optional additive Gaussian noise (sigma in [0, 1] units), clamped to [0, 1].
    """
    rng = torch.Generator().manual_seed(seed)
    z_dim, R = int(G.z_dim), int(G.img_resolution)  # type: ignore[arg-type]
    base = torch.randn(z_dim, generator=rng)
    n_keys = frames // keyframe_every + 2
    keys = [base] + [_slerp(base, torch.randn(z_dim, generator=rng), motion) for _ in range(n_keys - 1)]
    zs = []
    for t in range(frames):
        k, f = divmod(t, keyframe_every)
        s = f / keyframe_every
        s = s * s * (3 - 2 * s)  # smoothstep: no kink at keyframes
        zs.append(_slerp(keys[k], keys[k + 1], s))
    device = next(G.parameters()).device  # drawn on the CPU (same world on every device), run on G's
    ws = G.mapping(torch.stack(zs).to(device))  # type: ignore[operator]  # [T, num_ws, w_dim]
    noise = [torch.randn(1, 1, h, w, generator=rng).to(device) for h, w in G.noise_shapes()]  # type: ignore[operator]
    truth = ((G.synthesis(ws, noise=noise) + 1) / 2).clamp(0, 1).float().cpu()  # type: ignore[operator]  # [T, 3, R, R]
    ws = ws.cpu()
    lr = truth
    if blur_sigma > 0:
        lr = _gaussian_blur(lr, blur_sigma)
    size = max(1, round(R / scale))
    lr = downscale(lr, (size, size))
    if noise_sigma > 0:
        lr = lr + noise_sigma * torch.randn(lr.shape, generator=rng)
    lr = lr.clamp(0, 1)
    return SyntheticTrack(
        truth=truth.permute(0, 2, 3, 1).numpy().astype(np.float32),
        crops=[c.permute(1, 2, 0).numpy().astype(np.float32) for c in lr],
        ws=ws,
    )


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[1]
    img = F.pad(img, [radius] * 4, mode="reflect")
    img = F.conv2d(img, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(img, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@torch.no_grad()
def reference_renders(
    G: torch.nn.Module, ws: torch.Tensor, seed: int, window: tuple[float, float] = (0.8, 0.95)
) -> list[np.ndarray]:
    """Reference "photos" of a known person: one render [R, R, 3] per true latent ws [K, num_ws, w_dim]
    under fresh noise maps, each cropped to a random window (`window` of the side, anywhere in the
    frame) and resized back to R (a photo is never aligned exactly as the generator's frame)."""
    rng = np.random.default_rng(seed)
    noise_rng = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    R = int(G.img_resolution)  # type: ignore[arg-type]
    out = []
    for k in range(ws.shape[0]):
        noise = [torch.randn(1, 1, h, w, generator=noise_rng).to(device) for h, w in G.noise_shapes()]  # type: ignore[operator]
        img = ((G.synthesis(ws[k : k + 1].to(device), noise=noise) + 1) / 2).clamp(0, 1).float().cpu()  # type: ignore[operator]
        side = round(R * float(rng.uniform(*window)))
        x0, y0 = (int(v) for v in rng.integers(0, R - side + 1, size=2))
        crop = img[:, :, y0 : y0 + side, x0 : x0 + side]
        crop = F.interpolate(crop, size=(R, R), mode="bicubic", align_corners=False).clamp(0, 1)
        out.append(crop[0].permute(1, 2, 0).numpy().astype(np.float32))
    return out
