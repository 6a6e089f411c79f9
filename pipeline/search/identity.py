"""The search's identity term: SFace (in torch, pipeline.metrics.sface_torch) on the restored face.

A restored face is the generator's image of an aligned crop (pipeline.faces.align), so where its
landmarks fall is known without detecting them: `crop_landmarks`, a typical face's landmarks (SFace's
own template) carried into the FFHQ-style square the scan builds from them. `identity_loss` is
1 - the cosine between the SFace embedding of each face and its reference embedding: differentiable
back to the latents (`search.identity_weight`, pipeline.search.loop).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.faces.align import crop_to_frame_affine
from pipeline.metrics.sface_torch import SIZE, TEMPLATE, embed


@lru_cache(maxsize=1)
def crop_landmarks() -> np.ndarray:
    """Where a typical face's 5 landmarks fall in a crop aligned as the scan aligns faces, as
    fractions [5, 2] of the crop's side (continuous coordinates): SFace's template carried into its
    own FFHQ-style square."""
    size = 1000
    points = TEMPLATE + 0.5  # OpenCV pixel coordinates -> continuous (pixel centres at +0.5)
    to_frame = crop_to_frame_affine(points, size)
    inv = np.linalg.inv(np.vstack([to_frame, [0.0, 0.0, 1.0]]))[:2]
    return (points @ inv[:, :2].T + inv[:, 2]) / size


def embed_crops(images: torch.Tensor) -> torch.Tensor:
    """SFace embeddings [B, 128] (normalised) of faces images [B, 3, r, r] in [0, 1], aligned crops
    as the scan makes them; differentiable. Images larger than twice SFace's side are first reduced
    (antialiased) to that, so the bilinear sampling onto 112×112 does not alias."""
    if images.shape[-1] > 2 * SIZE:
        images = F.interpolate(images, size=(2 * SIZE, 2 * SIZE), mode="bilinear", antialias=True)
    r = images.shape[-1]
    return embed(images, crop_landmarks() * r - 0.5)  # continuous -> OpenCV pixel coordinates


def identity_loss(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """[B]: 1 - cosine of each face's SFace embedding (images [B, 3, r, r] in [0, 1], aligned crops)
    to its reference embedding [B, 128] (unit length)."""
    return 1.0 - (embed_crops(images.clamp(0, 1)) * F.normalize(reference.float(), dim=1)).sum(1)
