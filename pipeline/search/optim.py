"""A batched spherical Adam: PULSE's optimiser, with per-face step counts, learning rates and stopping.

PULSE runs Adam and then puts every latent vector (and every optimised noise map) back on the sphere of its
initial radius. Here each face of a batch also has its own step count (Adam's bias correction), its own
learning rate and its own budget, so faces can stop early one by one and the batch shrinks to the faces
still running (the synthesis then only runs on those).
"""

from __future__ import annotations

import math

import torch


def _sphere_dims(x: torch.Tensor) -> tuple[int, ...]:
    # [B, num_ws, w_dim] -> one radius per latent vector; [B, 1, H, W] -> one radius per noise map
    return tuple(range(2, x.ndim))


def sphere_radius(x: torch.Tensor) -> torch.Tensor:
    """Norm of every vector the optimiser keeps on a sphere (keepdim, same rank as x)."""
    return (x.pow(2).sum(_sphere_dims(x), keepdim=True) + 1e-9).sqrt()


class SphericalAdam:
    """Adam over whole-batch parameter tensors, stepping only the faces it is given.

    params: tensors [B, ...] (not leaves; the caller gathers `p[idx]` into a leaf to get gradients).
    update_masks: optional per-parameter masks [B, ...] broadcastable to the parameter: entries where the
    mask is 0 never move (e.g. [B, num_ws, 1] for coarse layers shared along a track).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        update_masks: list[torch.Tensor | None] | None = None,
    ) -> None:
        self.params = params
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.radii = [sphere_radius(p) for p in params]
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        batch = params[0].shape[0]
        self.step_count = torch.zeros(batch, dtype=torch.long, device=params[0].device)  # [B]
        self.update_masks = update_masks or [None] * len(params)

    @torch.no_grad()
    def step(self, idx: torch.Tensor, grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        """One step for faces idx [n] with their gradients [n, ...] and learning rates lr [n]."""
        self.step_count[idx] += 1
        t = self.step_count[idx].to(self.params[0].dtype)  # [n]
        bc1 = 1 - self.beta1**t
        bc2 = 1 - self.beta2**t
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            shape = (-1,) + (1,) * (p.ndim - 1)
            m = self.exp_avg[i][idx].mul_(self.beta1).add_(g, alpha=1 - self.beta1)
            v = self.exp_avg_sq[i][idx].mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            self.exp_avg[i][idx] = m
            self.exp_avg_sq[i][idx] = v
            denom = (v / bc2.view(shape)).sqrt_().add_(self.eps)
            update = (m / bc1.view(shape)) / denom * lr.view(shape)
            old = p[idx]
            new = old - update
            # back onto each vector's initial sphere (PULSE's projection)
            new = new / sphere_radius(new) * self.radii[i][idx]
            mask = self.update_masks[i]
            if mask is not None:  # frozen entries keep their exact values (no re-projection rounding)
                new = torch.where(mask[idx] > 0, new, old)
            p[idx] = new


def cold_schedule(progress: torch.Tensor) -> torch.Tensor:
    """PULSE's "linear1cycledrop": ramp 0.1 -> 1 -> 0.1 over the first 90 %, then drop to 0.001.

    progress: step / budget in [0, 1] per face. Returns the learning-rate factor per face.
    """
    x = progress / 0.9
    cycle = (9 * (1 - (x - 0.5).abs() * 2) + 1) / 10
    drop = 0.1 + (progress - 0.9) / 0.1 * (1e-3 - 0.1)
    return torch.where(progress < 0.9, cycle, drop)


def warm_schedule(progress: torch.Tensor) -> torch.Tensor:
    """Warm starts begin near the answer: no ramp-up, a cosine decay from 1 to 0.05."""
    return 0.05 + 0.95 * 0.5 * (1 + torch.cos(math.pi * progress.clamp(0, 1)))
