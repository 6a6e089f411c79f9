"""What a search starts from and what it returns, per face (batched tensors, first dimension = face)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Guide:
    """A reference person as a guided track's search sees them (pipeline.search.guide)."""

    latents: torch.Tensor  # [1, num_ws, w_dim] inverted from their photos (Gaussianised)
    embedding: torch.Tensor | None = None  # [128] unit SFace embedding of their photos (identity term)


@dataclass
class SearchState:
    """Everything that defines a face's image: Gaussianised latents and every noise map.

    All noise maps are carried (optimised and fixed ones): a warm-started frame must keep the previous
    frame's fixed noise too, or fine texture would re-roll every frame and flicker.
    """

    latents: torch.Tensor  # [B, num_ws, w_dim] in the Gaussianised space (see GaussianizedW)
    noise: list[torch.Tensor]  # one per noise input, in G.noise_shapes() order: [B, 1, H, W]
    # [B, 3, R, R] the full-resolution render of exactly this state (not clamped, not gray), on the search
    # device, when known: a warm start from this state then needs no full render to begin. Never stored
    # or sent anywhere (detach drops it), and any new state made from this one starts without it.
    image: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def select(self, index: torch.Tensor | Sequence[int] | slice) -> SearchState:
        """The faces at `index` (a bool mask, integer indices or a slice)."""
        if isinstance(index, Sequence):
            index = torch.as_tensor(list(index), dtype=torch.long, device=self.latents.device)
        image = self.image[index] if self.image is not None else None
        return SearchState(self.latents[index], [n[index] for n in self.noise], image)

    def to(self, device: torch.device | str) -> SearchState:
        image = self.image.to(device) if self.image is not None else None
        return SearchState(self.latents.to(device), [n.to(device) for n in self.noise], image)

    def detach(self) -> SearchState:
        """A copy detached from any graph, on the CPU (cheap to keep and to pickle between workers)."""
        return SearchState(
            self.latents.detach().cpu().clone(), [n.detach().cpu().clone() for n in self.noise]
        )

    @staticmethod
    def cat(states: Sequence[SearchState]) -> SearchState:
        if not states:
            raise ValueError("SearchState.cat: no states")
        device = states[0].latents.device
        images = [s.image for s in states]
        return SearchState(
            torch.cat([s.latents.to(device) for s in states]),
            [torch.cat([s.noise[i].to(device) for s in states]) for i in range(len(states[0].noise))],
            torch.cat([i.to(device) for i in images]) if all(i is not None for i in images) else None,  # type: ignore[union-attr]
        )

    def with_radii_of(self, ref: SearchState) -> SearchState:
        """This state with every latent vector and noise map rescaled to the norm it has in `ref`.

        The search keeps each of them on the sphere of its initial radius; an average over frames lies
        inside that sphere, and this puts it back.
        """

        def fit(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            dims = tuple(range(2, x.ndim))
            return (
                x
                / x.norm(dim=dims, keepdim=True).clamp_min(1e-9)
                * r.to(x.device).norm(dim=dims, keepdim=True)
            )

        return SearchState(
            fit(self.latents, ref.latents), [fit(x, r) for x, r in zip(self.noise, ref.noise, strict=True)]
        )

    @staticmethod
    def lerp(a: SearchState, b: SearchState, weight: torch.Tensor | float) -> SearchState:
        """Blend two states per face: (1 - weight) * a + weight * b, keeping a's per-vector norms.

        The search keeps every latent vector and noise map on a sphere, so a blend is put back on it
        (a straight average of two points on a sphere lies inside it).
        """
        wt = torch.as_tensor(weight, dtype=a.latents.dtype, device=a.latents.device)
        if wt.ndim == 0:
            wt = wt.expand(len(a))

        def mix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            k = wt.view(-1, *([1] * (x.ndim - 1)))
            out = (1 - k) * x + k * y.to(x.device)
            dims = tuple(range(2, x.ndim))
            r_x = x.norm(dim=dims, keepdim=True)
            r_y = y.to(x.device).norm(dim=dims, keepdim=True)
            return out / out.norm(dim=dims, keepdim=True).clamp_min(1e-9) * ((1 - k) * r_x + k * r_y)

        return SearchState(
            mix(a.latents, b.latents), [mix(x, y) for x, y in zip(a.noise, b.noise, strict=True)]
        )


@dataclass
class SearchResult:
    """The search's answer for a batch of faces (all tensors on the CPU except `state`)."""

    state: SearchState  # the chosen iterate per face, on the search device (warm-starts the next frame)
    ws: torch.Tensor  # [B, num_ws, w_dim] W+ latents of that iterate
    images: torch.Tensor  # [B, 3, R, R] float32 in [0, 1], full-resolution render (gray faces: R = G = B)
    mse: torch.Tensor  # [B] float32: downscaled render vs target (luminance for gray faces)
    psnr: torch.Tensor  # [B] float32 dB, from mse (peak 1)
    met_bound: torch.Tensor  # [B] bool: mse <= settings.eps, measured on the full-resolution render
    steps: torch.Tensor  # [B] int64: optimiser steps spent (including any full-resolution refinement)

    def __len__(self) -> int:
        return int(self.ws.shape[0])
