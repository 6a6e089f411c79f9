"""The targets of one search call, prepared once: per-size groups, gray flags, and the per-face fit.

Everything the step loop needs to compare a batch of images with its targets is fixed here, so the loop
indexes with these tensors and never asks the device which faces are where (no host synchronisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.errors import SearchError
from pipeline.search.loss import downscale, luminance, pixel_losses

Targets = torch.Tensor | Sequence[torch.Tensor]  # [B, C, h, w] or B tensors [C, h, w]; C = 1 or 3, in [0, 1]


@dataclass
class TargetBatch:
    """Targets prepared once per call, grouped by size so that each group is downscaled in one go.

    Everything the loss needs is fixed here: the step loop indexes with these tensors and never asks the
    device which faces are where.
    """

    targets: list[torch.Tensor]  # per face [3, h, w] on the device (gray faces already as luma x 3)
    sizes: list[tuple[int, int]]  # distinct target sizes
    members: list[torch.Tensor]  # per size: [n_s] long, the faces of that size in ascending order
    groups: list[torch.Tensor]  # per size: [n_s, 3, h, w] their targets
    order: torch.Tensor  # [B] long: face b's row in the concatenation of the groups
    gray: torch.Tensor  # [B] bool
    any_gray: bool  # gray.any(), known on the host

    @property
    def max_side(self) -> int:
        return max(max(s) for s in self.sizes)

    def __len__(self) -> int:
        return len(self.targets)


def _group(targets: list[torch.Tensor], gray: torch.Tensor, any_gray: bool) -> TargetBatch:
    """A TargetBatch from per-face targets [3, h, w] (already gray where gray [B] is True)."""
    device = targets[0].device
    sizes: list[tuple[int, int]] = []
    members: list[list[int]] = []
    for b, t in enumerate(targets):
        hw = (int(t.shape[1]), int(t.shape[2]))
        if hw not in sizes:
            sizes.append(hw)
            members.append([])
        members[sizes.index(hw)].append(b)
    flat = [b for m in members for b in m]
    order = [0] * len(flat)
    for row, b in enumerate(flat):
        order[b] = row
    return TargetBatch(
        targets=targets,
        sizes=sizes,
        members=[torch.tensor(m, dtype=torch.long, device=device) for m in members],
        groups=[torch.stack([targets[b] for b in m]) for m in members],
        order=torch.tensor(order, dtype=torch.long, device=device),
        gray=gray,
        any_gray=any_gray,
    )


def prepare_targets(
    targets: Targets, gray: torch.Tensor | bool, resolution: int, device: torch.device
) -> TargetBatch:
    faces = list(targets.unbind(0)) if isinstance(targets, torch.Tensor) else list(targets)
    if not faces:
        raise SearchError("search: no targets")
    g = torch.as_tensor(gray, dtype=torch.bool).flatten()
    g = g.expand(len(faces)).clone() if g.numel() == 1 else g.clone()
    if g.numel() != len(faces):
        raise SearchError(f"search: gray has {g.numel()} entries for {len(faces)} targets")
    prepared: list[torch.Tensor] = []
    for i, t in enumerate(faces):
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise SearchError(
                f"search: target {i} has shape {tuple(t.shape)}; expected [C, h, w] with C = 1 or 3"
            )
        h, w = int(t.shape[1]), int(t.shape[2])
        if h > resolution or w > resolution or min(h, w) < 1:
            raise SearchError(
                f"search: target {i} is {w}x{h} px; it must be at most the generator's {resolution} px"
            )
        if not bool(torch.isfinite(t).all()):
            raise SearchError(f"search: target {i} contains NaN or infinite values")
        t = t.to(device=device, dtype=torch.float32).clamp(0, 1)
        if t.shape[0] == 1:  # a one-channel target is gray footage whatever the flag says
            t, g[i] = t.expand(3, h, w), True
        if g[i]:
            t = luminance(t[None])[0].expand(3, h, w)
        prepared.append(t)
    return _group(prepared, g.to(device), bool(g.any()))


def gray_like(img: torch.Tensor, batch: TargetBatch) -> torch.Tensor:
    """img [B, 3, H, W] with the gray faces as their luma on all three channels (no host sync)."""
    if not batch.any_gray:
        return img
    return torch.where(batch.gray.view(-1, 1, 1, 1), luminance(img).expand_as(img), img)


def lowres_losses(img: torch.Tensor, batch: TargetBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-face (mse, mae) [B] of img [B, 3, r, r] downscaled to each face's target."""
    img = gray_like(img, batch)
    if len(batch.sizes) == 1:
        return pixel_losses(downscale(img, batch.sizes[0]), batch.groups[0])
    parts = [
        pixel_losses(downscale(img.index_select(0, sel), size), target)
        for sel, size, target in zip(batch.members, batch.sizes, batch.groups, strict=True)
    ]
    mse = torch.cat([m for m, _ in parts]).index_select(0, batch.order)
    mae = torch.cat([a for _, a in parts]).index_select(0, batch.order)
    return mse, mae


def take_targets(batch: TargetBatch, keep: list[int]) -> TargetBatch:
    """The targets of the faces keep (indices into batch, in that order), re-indexed from 0."""
    gray = batch.gray[torch.tensor(keep, dtype=torch.long, device=batch.gray.device)]
    # any_gray stays a host-side "maybe" (gray_like is exact either way): no sync to find out
    return _group([batch.targets[b] for b in keep], gray, batch.any_gray)


def subset(batch: TargetBatch, mask: torch.Tensor) -> TargetBatch:
    """The same targets restricted to the faces where mask [B] is True (re-indexed from 0)."""
    return take_targets(batch, [b for b, k in enumerate(mask.tolist()) if k])
