"""Reference-guided search: photos of a person steer the latent search towards that identity.

Each reference photo (an aligned face crop, as the scan aligns a track's faces) is inverted with our
own search: a cold search whose target is the photo itself, at up to the generator's resolution, with
`search.guide_steps` steps from `search.guide_restarts` starts. A reference person's latents are one
w, the same at every layer: the mean in W of every inversion's layers (`person_latents`).

A track matched to that person (pipeline.faces.choose, by SFace identity) is then searched with two
changes (pipeline.search.search): its cold first frame starts from the person's latents, and every
frame's loss gains `search.guide_weight` x the mean squared distance of its latents to them. The fit
to the footage is unchanged and still decides: a guided face that misses the bound is refined without
the pull, so the guidance only chooses among solutions consistent with the footage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from pipeline.config import SearchConfig
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.search import search


def photo_target(photo: np.ndarray, resolution: int) -> torch.Tensor:
    """An aligned reference crop [S, S, 3] (float in [0, 1], or uint8) as a search target [3, s, s],
    reduced to at most the generator's resolution."""
    import cv2

    a = np.asarray(photo)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[0] > resolution:
        a = cv2.resize(a, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).clamp(0, 1)


def invert_photos(
    G: torch.nn.Module,
    space: GaussianizedW,
    photos: Sequence[np.ndarray],
    *,
    settings: SearchConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Gaussianised latents [K x restarts, num_ws, w_dim] of K reference photos (cold searches)."""
    resolution = int(G.img_resolution)  # type: ignore[arg-type]
    # each photo from `guide_restarts` starts: their mean is steadier than one inversion
    targets = [photo_target(p, resolution) for p in photos for _ in range(max(1, settings.guide_restarts))]
    # the photo is the whole answer here: no early stop on the fit, only when it stops improving
    inversion = replace(
        settings,
        steps=settings.guide_steps,
        stop_eps=0.0,
        patience=max(settings.patience, settings.guide_steps // 5),
        truncate_factor=0.0,
        smooth_sigma=0.0,
    )
    seeds = [seed * 7_919 + 101 + k for k in range(len(targets))]
    out = []
    for b0 in range(0, len(targets), max(1, settings.batch_size)):
        part = targets[b0 : b0 + settings.batch_size]
        res = search(
            G, part, settings=inversion, space=space, seeds=seeds[b0 : b0 + len(part)], device=device
        )
        out.append(res.state.latents.detach().cpu())
    return torch.cat(out)


def person_latents(space: GaussianizedW, latents: torch.Tensor) -> torch.Tensor:
    """One person's latents [1, num_ws, w_dim] from their photos' [K, num_ws, w_dim] (Gaussianised):
    the mean in W over photos and layers, the same at every layer. A person is one w (the mapping
    network gives one per face); each inversion's per-layer freedom fits what differs between the
    photos (noise, crop, light), and the mean keeps what they share."""
    w = space.to_w(latents).mean((0, 1), keepdim=True)  # [1, 1, w_dim]
    return space.from_w(w).expand(1, latents.shape[1], -1).contiguous()


def reference_latents(
    G: torch.nn.Module,
    space: GaussianizedW,
    people: Sequence[Sequence[np.ndarray]],
    *,
    settings: SearchConfig,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Per reference person (their aligned photos), their latents [1, num_ws, w_dim] on the CPU."""
    return [
        person_latents(
            space, invert_photos(G, space, photos, settings=settings, device=device, seed=settings.seed + i)
        ).cpu()
        for i, photos in enumerate(people)
    ]
