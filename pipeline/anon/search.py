"""The synthetic face of every servable face-frame: a latent search against a few pixels.

Irreversible by construction:
- the target is the aligned face reduced to `anon.bottleneck` px across (8 by default): pose,
  lighting and skin tone survive, the person's identity does not (see scripts/evaluate_anonymize.py);
- each person (the scan's people, `pipeline.faces.people`; an undecided track is a person of its
  own) starts from a random state drawn from the OS's randomness (`secrets`), used for the person's
  first face and then dropped: it is never returned, stored, logged or derivable from a setting, so
  two runs give two different people and nobody can replay a run;
- one synthetic person per person: the first frame of each later track of the person (another
  shot) starts from, and is pulled towards, the person's first synthetic face, and every later frame
  of a track warm-starts from the frame before, so the person keeps one synthetic identity in every
  shot. The plan puts a person's tracks in one search unit (`Mode.units_by_person`), so the secret
  and that first face exist only inside one call of `anonymize_unit`;
- resume: a unit's results are kept only when all of them were written, so a resumed run either
  keeps every track of a person or searches them all again from a new secret (a new synthetic
  person, the same in every shot); it never mixes two.
The search itself is the project's (`pipeline.search.search.search`), called through its public
arguments (`init`, `prev`, `prev_mask`); only the synthetic images leave this module (as
FaceRestorations whose `latents` are empty: the latents are not kept either).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import AnonConfig, Config
from pipeline.faces.align import ffhq_quad, native_size
from pipeline.types import FaceCrop, FaceRestoration, TrackFrame

if TYPE_CHECKING:
    from pipeline.prior.stylegan2 import Generator
    from pipeline.search.latent_space import GaussianizedW
    from pipeline.search.state import SearchResult, SearchState

log = logging.getLogger(__name__)

NO_LATENTS = np.zeros((0, 0), np.float32)  # FaceRestoration.latents of a synthetic face: not kept


def secret_start(G: Generator) -> SearchState:
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


def person_sequences(
    crops: Sequence[FaceCrop], limit: float, persons: Mapping[int, int] | None
) -> list[list[FaceCrop]]:
    """The crops one synthetic person is searched along: per person, their tracks one after the
    other (tracks of one person are never on screen together), each in frame order. A track with no
    person in `persons` is a person of its own. Crops larger than `limit` px are left to the mask."""
    by_track: dict[int, list[FaceCrop]] = defaultdict(list)
    for c in crops:
        if c.image.shape[0] <= limit:  # larger faces are masked: the generator's detail is too coarse
            by_track[c.track_id].append(c)
    by_person: dict[tuple[int, int], list[list[FaceCrop]]] = defaultdict(list)
    for tid in sorted(by_track):
        rows = sorted(by_track[tid], key=lambda c: c.frame_index)
        key = (0, persons[tid]) if persons is not None and tid in persons else (1, tid)
        by_person[key].append(rows)
    return [
        [c for rows in sorted(runs, key=lambda r: (r[0].frame_index, r[0].track_id)) for c in rows]
        for _, runs in sorted(by_person.items())
    ]


def anonymize_unit(
    G: Generator,  # on `device`
    space: GaussianizedW,  # fitted for G
    crops: Sequence[FaceCrop],  # the servable face-frames of whole tracks (of whole people)
    cfg: Config,
    device: str = "cpu",
    persons: Mapping[int, int] | None = None,  # track id -> person id (the scan's people)
) -> list[FaceRestoration]:
    """Synthetic faces for whole people, advanced in lockstep (step t of every person in one batch).

    One synthetic person per person (`person_sequences`): the person's first face is a cold search
    from `secret_start`; the first frame of each later track of the person starts from, and is
    pulled towards, that first synthetic face (so every shot shows the same synthetic person);
    every other frame warm-starts from the frame before. The secret and the states live only in
    this call. Returns one FaceRestoration per crop it serves (track, frame order; crops larger
    than `anon.max_face_ratio` x the generator's resolution are left to the mask) with `psnr` and
    `met_bound` measured at the bottleneck and no latents.
    """
    import torch

    from pipeline.search.search import search
    from pipeline.search.state import SearchState
    from pipeline.search.track import crop_to_tensor

    sequences = person_sequences(crops, cfg.anon.max_face_ratio * int(G.img_resolution), persons)
    size = cfg.anon.bottleneck
    prev: dict[int, SearchState] = {}  # sequence -> the state of its last frame (on the search device)
    first: dict[int, SearchState] = {}  # sequence -> the state of the person's first synthetic face
    out: list[FaceRestoration] = []
    step = max(1, cfg.search.batch_size)
    for t in range(max((len(v) for v in sequences), default=0)):
        live = [k for k, seq in enumerate(sequences) if t < len(seq)]
        for b0 in range(0, len(live), step):
            part = live[b0 : b0 + step]
            here = [sequences[k][t] for k in part]
            targets = [
                crop_to_tensor(bottleneck_target(c.image, size), f"track {c.track_id} frame {c.frame_index}")
                for c in here
            ]
            warm = torch.tensor([k in prev for k in part])
            new_track = [t > 0 and sequences[k][t - 1].track_id != sequences[k][t].track_id for k in part]
            # A person's start is drawn here and lives only in this list, for this one call.
            starts = [
                (first[k] if new else prev[k]) if k in prev else secret_start(G)
                for k, new in zip(part, new_track, strict=True)
            ]
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
            for i, (k, c) in enumerate(zip(part, here, strict=True)):
                prev[k] = res.state.select([i])
                first.setdefault(k, prev[k])
                out.append(_synthetic(c, res, i))
    prev.clear()
    first.clear()
    out.sort(key=lambda f: (f.track_id, f.frame_index))
    return out


def _synthetic(c: FaceCrop, res: SearchResult, i: int) -> FaceRestoration:
    """The i-th face of a search result as the synthetic face of crop `c` (its latents not kept)."""
    return FaceRestoration(
        track_id=c.track_id,
        frame_index=c.frame_index,
        latents=NO_LATENTS,
        image=res.images[i].permute(1, 2, 0).numpy().astype(np.float32),
        psnr=float(res.psnr[i]),
        met_bound=bool(res.met_bound[i]),
        steps=int(res.steps[i]),
    )
