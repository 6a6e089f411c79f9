"""The synthetic face of every servable face-frame: a latent search against a few pixels.

Irreversible by construction:
- the target is the aligned face reduced to `anon.bottleneck` px across (8 by default): pose,
  lighting and skin tone survive, the person's identity does not (see scripts/evaluate_anonymize.py);
- each track starts from a random state drawn from the OS's randomness (`secrets`), used for the
  track's first frame and then dropped: it is never returned, stored, logged or derivable from a
  setting, so two runs give two different people and nobody can replay a run;
- every later frame of a track warm-starts from the frame before, so a track keeps one identity.
The search itself is the project's (`pipeline.search.search.search`), called through its public
arguments (`init`, `prev`, `prev_mask`); only the synthetic images leave this module (as
FaceRestorations whose `latents` are empty: the latents are not kept either).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.config import AnonConfig, Config
from pipeline.faces.align import ffhq_quad, native_size
from pipeline.types import FaceCrop, FaceRestoration, TrackFrame

log = logging.getLogger(__name__)

NO_LATENTS = np.zeros((0, 0), np.float32)  # FaceRestoration.latents of a synthetic face: not kept


def secret_start(G: Any) -> Any:
    """A cold start for one face (SearchState, batch 1) drawn from the OS's randomness.

    The generator is seeded with 63 fresh bits from `secrets` that exist only inside this call.
    """
    import torch

    from pipeline.search.state import SearchState

    rng = torch.Generator().manual_seed(secrets.randbits(63))
    lat = torch.randn(1, int(G.num_ws), int(G.w_dim), generator=rng)  # [1, num_ws, w_dim]
    noise = [torch.randn(1, 1, h, w, generator=rng) for h, w in G.noise_shapes()]
    return SearchState(lat, noise)


def bottleneck_target(crop: np.ndarray, size: int) -> np.ndarray:
    """The aligned crop [S, S, 3] reduced to [size, size, 3] (area average): all the search sees."""
    import cv2

    if crop.shape[0] <= size:
        return np.asarray(crop, np.float32)
    return np.asarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), np.float32)


def unservable(
    row: TrackFrame, frame_size: tuple[int, int], anon: AnonConfig, resolution: int | None
) -> str | None:
    """Why the search cannot serve this face-frame (it is masked instead), or None when it can.

    `frame_size` (w, h) in source px; `resolution`: the generator's (None: not known yet, so a face
    too large for it is not refused here; `anonymize_unit` refuses it).
    """
    size = native_size(row.landmarks)
    if size < anon.min_face:
        return "too small"
    if resolution is not None and size > anon.max_face_ratio * resolution:
        return "too large"
    lm = np.asarray(row.landmarks, np.float64)
    eyes = lm[1] - lm[0]
    eye_dist = float(np.hypot(*eyes))
    if eye_dist < 1e-3:
        return "profile"
    offset = float(np.dot(lm[2] - (lm[0] + lm[1]) / 2, eyes / eye_dist))  # nose off the eye midline
    if abs(offset) > anon.max_yaw * eye_dist:
        return "profile"
    c, x, y = ffhq_quad(lm)
    corners = np.stack([c - x - y, c + x - y, c + x + y, c - x + y])  # [4, 2]
    lo, hi = corners.min(0), corners.max(0)
    inside = np.clip(np.minimum(hi, frame_size) - np.maximum(lo, 0), 0, None)
    area = float(np.prod(hi - lo))
    if area <= 0 or 1.0 - float(np.prod(inside)) / area > anon.max_outside:
        return "outside"
    return None


def anonymize_unit(
    G: Any,  # pipeline.prior.stylegan2.Generator on `device`
    space: Any,  # pipeline.search.latent_space.GaussianizedW fitted for G
    crops: Sequence[FaceCrop],  # the servable face-frames of whole tracks
    cfg: Config,
    device: str = "cpu",
) -> list[FaceRestoration]:
    """Synthetic faces for whole tracks, advanced in lockstep (frame t of every track in one batch).

    Frame 0 of a track: a cold search from `secret_start`; later frames: warm from the frame before.
    Returns one FaceRestoration per crop it serves (track, frame order; crops larger than
    `anon.max_face_ratio` x the generator's resolution are left to the mask) with `psnr` and
    `met_bound` measured at the bottleneck and no latents.
    """
    import torch

    from pipeline.search.search import search
    from pipeline.search.state import SearchState
    from pipeline.search.track import crop_to_tensor

    limit = cfg.anon.max_face_ratio * int(G.img_resolution)
    by_track: dict[int, list[FaceCrop]] = defaultdict(list)
    for c in crops:
        if c.image.shape[0] <= limit:  # larger faces are masked: the generator's detail is too coarse
            by_track[c.track_id].append(c)
    tids = sorted(by_track)
    for tid in tids:
        by_track[tid].sort(key=lambda c: c.frame_index)
    size = cfg.anon.bottleneck
    prev: dict[int, Any] = {}  # track -> SearchState of its last frame (on the search device)
    out: list[FaceRestoration] = []
    step = max(1, cfg.search.batch_size)
    length = max((len(v) for v in by_track.values()), default=0)
    for t in range(length):
        live = [tid for tid in tids if t < len(by_track[tid])]
        for b0 in range(0, len(live), step):
            part = live[b0 : b0 + step]
            here = [by_track[tid][t] for tid in part]
            targets = [
                crop_to_tensor(bottleneck_target(c.image, size), f"track {c.track_id} frame {c.frame_index}")
                for c in here
            ]
            warm = torch.tensor([tid in prev for tid in part])
            # A cold track's start is drawn here and lives only in this list, for this one call.
            starts = [prev[tid] if tid in prev else secret_start(G) for tid in part]
            init = SearchState.cat(starts)
            res = search(
                G,
                targets,
                settings=cfg.search,
                space=space,
                init=init,
                prev=init if bool(warm.any()) else None,
                prev_mask=warm if bool(warm.any()) else None,
                gray=torch.tensor([c.gray for c in here]),
                device=device,
            )
            del starts, init
            for i, (tid, c) in enumerate(zip(part, here, strict=True)):
                prev[tid] = res.state.select([i])
                out.append(
                    FaceRestoration(
                        track_id=c.track_id,
                        frame_index=c.frame_index,
                        latents=NO_LATENTS,
                        image=res.images[i].permute(1, 2, 0).numpy().astype(np.float32),
                        psnr=float(res.psnr[i]),
                        met_bound=bool(res.met_bound[i]),
                        steps=int(res.steps[i]),
                    )
                )
    prev.clear()
    out.sort(key=lambda f: (f.track_id, f.frame_index))
    return out
