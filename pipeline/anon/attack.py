"""The attack check: can the project's own restore bring a hidden person back?

Anonymisers are known to be partly reversible. An attacker holding the anonymised video and this
pipeline would run restore's latent search (`pipeline.search.units.search_tracks`, the same prior)
on each hidden face. The check does exactly that, on a sample of face-frames: the aligned face is
cut from the *output* at the scan's landmarks, restored, and the restored face's SFace embedding is
compared with the original face's at the same place. The person counts as still hidden while the
highest cosine stays below `ATTACK_COSINE` (0.3, under SFace's same-person 0.363: a margin).

Each sampled face-frame is searched on its own: a cold search with the run's search settings, but
at least restore's default step budget (an attacker would not stop early). The audit attacks
`anon.attack_faces` face-frames, those whose output is already closest to the person first. The figure means
something only with a real face model; with a seeded random test generator it checks the machinery
(the attack runs and a leaky anonymiser is caught), which is how the tests use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import Config, SearchConfig

if TYPE_CHECKING:
    from pipeline.prior.stylegan2 import Generator
    from pipeline.run.search_steps import SearchModel
    from pipeline.search.latent_space import GaussianizedW
    from pipeline.types import TrackFrame, VideoFrame

log = logging.getLogger(__name__)

ATTACK_COSINE = 0.3  # an attacked face at or above this SFace cosine to the original is a leak


@dataclass(frozen=True)
class Target:
    """A face-frame to attack: where the face is in the source frame (source px)."""

    track_id: int
    frame_index: int
    box: np.ndarray  # [4] x0, y0, x1, y1
    landmarks: np.ndarray  # [5, 2]


def aligned_embedding(image: np.ndarray, crop_to_frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """SFace embedding of an FFHQ-aligned face image [S, S, 3] (float 0..1 or uint8) whose crop sits
    at `crop_to_frame` [2, 3] in a frame where the face has `landmarks` [5, 2] (frame px): the
    landmarks are carried into the crop, and a crop under 112 px is enlarged first (SFace's size)."""
    import cv2

    from pipeline.metrics.identity import embed_face

    side = int(image.shape[0])
    img = np.asarray(image, np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    scale = max(1.0, 112.0 / side)
    if scale > 1.0:
        size = (round(side * scale), round(side * scale))
        img = np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), np.float32)
    to_frame = np.vstack([np.asarray(crop_to_frame, np.float64), [0.0, 0.0, 1.0]])
    in_crop = (np.c_[np.asarray(landmarks, np.float64), np.ones(5)] @ np.linalg.inv(to_frame).T)[:, :2]
    box = np.array([0, 0, img.shape[1], img.shape[0]], np.float32)
    return embed_face(np.clip(img, 0, 1), box, (in_crop * scale).astype(np.float32))


def _unit(image: np.ndarray) -> np.ndarray:
    """A decoded frame as float32 RGB in [0, 1] (uint8 or uint16)."""
    top = 65535.0 if image.dtype == np.uint16 else 255.0
    return np.asarray(image, np.float32) / top


def attack(
    G: Generator,  # on `device`: the run's prior
    space: GaussianizedW,  # fitted for G
    original: Mapping[int, np.ndarray],  # frame -> source frame [H, W, 3]
    output: Mapping[int, np.ndarray],  # frame -> anonymised frame [H*s, W*s, 3] (s: the output scale)
    targets: Sequence[Target],
    cfg: Config,
    device: str = "cpu",
) -> list[float]:
    """SFace cosine between each target's original face and restore's search on its output face."""
    from pipeline.faces.align import crop_to_frame_affine, native_size, warp_crop
    from pipeline.metrics.identity import cosine, embed_face
    from pipeline.search.units import search_tracks
    from pipeline.types import FaceCrop

    crops, originals, marks = [], [], []
    for i, t in enumerate(targets):
        src, out = original[t.frame_index], output[t.frame_index]
        lm = np.asarray(t.landmarks, np.float64) * (out.shape[1] / src.shape[1])  # in output px
        size = native_size(lm)
        affine = crop_to_frame_affine(lm, size)
        image = np.clip(warp_crop(_unit(out), affine, size), 0, 1).astype(np.float32)
        gray = bool(np.ptp(image, axis=2).max() < 1e-3)
        crops.append(FaceCrop(i, t.frame_index, image, affine, gray))  # each face-frame its own track
        originals.append(embed_face(_unit(src), t.box, t.landmarks))
        marks.append(lm)
    if not crops:
        return []
    budget = max(cfg.search.steps, SearchConfig().steps)  # an attacker does not stop early
    settings = replace(cfg, search=replace(cfg.search, steps=budget))
    restored = {f.track_id: f for f in search_tracks(G, space, crops, settings, device)}
    cosines = []
    for i, lm in enumerate(marks):
        face = np.asarray(restored[i].image, np.float32)  # [R, R, 3], aligned as the crop was
        emb = aligned_embedding(face, crop_to_frame_affine(lm, int(face.shape[0])), lm)
        cosines.append(cosine(originals[i], emb))
    return cosines


def frames_at(
    frames: AbstractContextManager[Iterable[VideoFrame]], wanted: set[int]
) -> dict[int, np.ndarray]:
    """The frames of an open reader (VideoFrames) whose index is in `wanted`; reading stops after the last."""
    out: dict[int, np.ndarray] = {}
    last = max(wanted, default=-1)
    with frames as reader:
        for f in reader:
            if f.index in wanted:
                out[f.index] = np.asarray(f.image)
            if f.index >= last:
                break
    return out


def pick_targets(
    records: Sequence[Mapping[str, Any]], rows: Mapping[tuple[int, int], TrackFrame], limit: int
) -> list[Target]:
    """Up to `limit` face-frames to attack: those whose output is closest to the person already
    (highest identity cosine at compose), the others after them; one per (track, frame)."""
    ranked = sorted(
        records,
        key=lambda r: (
            -(float(r["identity_cosine"]) if r.get("identity_cosine") is not None else -2.0),
            int(r["frame"]),
            int(r["track_id"]),
        ),
    )
    out: list[Target] = []
    for r in ranked:
        row = rows.get((int(r["track_id"]), int(r["frame"])))
        if row is not None and len(out) < limit:
            out.append(Target(int(r["track_id"]), int(r["frame"]), row.box, row.landmarks))
    return out


def attack_check(
    source: Path,
    output: Path,
    targets: Sequence[Target],
    cfg: Config,
    model: SearchModel | None = None,  # a loaded search model; None: the run's prior is loaded
) -> dict[str, Any]:
    """The audit's `attack` section: restore's search with the run's prior on `targets` of `output`,
    compared with `source` as the pipeline reads it (`pipeline.run.frames.read_frames`)."""
    from pipeline.io.decode import open_video
    from pipeline.run.frames import read_frames
    from pipeline.run.search_steps import load_search_model

    section: dict[str, Any] = {
        "method": "restore's latent search (the run's prior) on the output's faces, each face-frame "
        "on its own; SFace cosine of the restored face to the original",
        "threshold": ATTACK_COSINE,
        "face_frames": len(targets),
        "max_cosine": None,
        "passed": None,
    }
    if not targets:
        return section | {"not_run": "no face-frame to attack"}
    if model is None:
        model = load_search_model(
            str(cfg.prior.model), cfg.run.device, cfg.prior.dtype, cfg.search.gaussian_samples
        )
    wanted = {t.frame_index for t in targets}
    first, last = min(wanted), max(wanted) + 1
    original = frames_at(read_frames(source, cfg, first, last), wanted)
    anonymised = frames_at(open_video(output).reader(first, last), wanted)
    here = [t for t in targets if t.frame_index in original and t.frame_index in anonymised]
    cosines = attack(model.G, model.space, original, anonymised, here, cfg, model.device)
    worst = max(cosines) if cosines else None
    log.info(
        "attack check: %d face-frames restored from the output, max SFace cosine %s", len(cosines), worst
    )
    return section | {
        "face_frames": len(cosines),
        "max_cosine": None if worst is None else round(float(worst), 4),
        "passed": None if worst is None else bool(worst < ATTACK_COSINE),
        "random_test_generator": bool(model.random),
    }
