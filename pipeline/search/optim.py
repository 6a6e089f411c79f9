"""A batched spherical Adam: PULSE's optimiser, with per-face step counts, learning rates and stopping.

PULSE runs Adam and then puts every latent vector (and every optimised noise map) back on the sphere of its
initial radius. Here each face of a batch also has its own step count (Adam's bias correction), its own
learning rate and its own budget, so faces can stop early one by one: a step moves only the faces still
active (a [B] mask), and a stopped face keeps its values bit for bit. The batch never changes shape, so
the step has no data-dependent indexing and no host synchronisation (a CUDA graph can replay it).
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
    """Adam over whole-batch parameter tensors, stepping only the faces marked active.

    params: tensors [B, ...], updated in place (they may be autograd leaves: the update runs under no_grad).
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
        self.radii = [sphere_radius(p.detach()) for p in params]
        self.exp_avg = [torch.zeros_like(p, requires_grad=False) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p, requires_grad=False) for p in params]
        batch = params[0].shape[0]
        self.step_count = torch.zeros(batch, dtype=torch.long, device=params[0].device)  # [B]
        masks = update_masks or [None] * len(params)
        # where a parameter may move: [B, ...] bool per parameter (None: everywhere), fixed for the run
        self.movable = [m > 0 if m is not None else None for m in masks]

    def take(self, keep: torch.Tensor) -> SphericalAdam:
        """This optimiser restricted to the faces keep [n] (long): new leaf parameters, the same moments,
        radii and step counts (a batch compacted between iterations goes on exactly where it was)."""
        new = SphericalAdam.__new__(SphericalAdam)
        new.params = [p.detach()[keep].requires_grad_(p.requires_grad) for p in self.params]
        new.beta1, new.beta2, new.eps = self.beta1, self.beta2, self.eps
        new.radii = [r[keep] for r in self.radii]
        new.exp_avg = [m[keep] for m in self.exp_avg]
        new.exp_avg_sq = [v[keep] for v in self.exp_avg_sq]
        new.step_count = self.step_count[keep]
        new.movable = [m[keep] if m is not None else None for m in self.movable]
        return new

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """One step for the faces where active [B] (bool) is True; grads [B, ...] per parameter, lr [B].

        Inactive faces keep their parameters, moments and step counts exactly.
        """
        B = self.step_count.shape[0]
        if active is None:
            active = torch.ones(B, dtype=torch.bool, device=self.step_count.device)
        self.step_count.add_(active.long())
        t = self.step_count.clamp_min(1).to(self.params[0].dtype)  # [B]
        bc1 = 1 - self.beta1**t
        bc2 = 1 - self.beta2**t
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            shape = (-1,) + (1,) * (p.ndim - 1)
            on = active.view(shape)
            m = self.exp_avg[i].mul(self.beta1).add_(g, alpha=1 - self.beta1)
            v = self.exp_avg_sq[i].mul(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            self.exp_avg[i].copy_(torch.where(on, m, self.exp_avg[i]))
            self.exp_avg_sq[i].copy_(torch.where(on, v, self.exp_avg_sq[i]))
            denom = (v / bc2.view(shape)).sqrt_().add_(self.eps)
            update = (m / bc1.view(shape)) / denom * lr.view(shape)
            new = p - update
            # back onto each vector's initial sphere (PULSE's projection)
            new = new / sphere_radius(new) * self.radii[i]
            move = on if self.movable[i] is None else on & self.movable[i]  # type: ignore[operator]
            # frozen entries keep their exact values (no re-projection rounding)
            p.copy_(torch.where(move, new, p))


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
