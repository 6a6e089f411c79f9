"""Anonymised frames: every face region masked, synthetic faces pasted on top.

Every face-frame gets a mask over its face box enlarged by `anon.mask_grow` (an ellipse, fully
opaque over the enlarged box, feathered outside it): "blur" reduces the region to
`anon.fallback_cells` px across and smooths it back up (what is left is a few averages, not a
blur a deconvolution could undo), "fill" paints it with its mean colour. A face-frame the search
served then gets its synthetic face pasted over the masked region (`pipeline.frame.compose`), so
whatever the synthetic face's feathered edge lets through is mask, never the original face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.affine import rescale_affine
from pipeline.config import AnonConfig, Config
from pipeline.frame.upscale import upscale
from pipeline.metrics.identity import cosine, embed_face
from pipeline.types import FaceRestoration

PASTE_TONE_SIGMA = 0.25  # tone matching of pasted faces: only the broad light of the masked region


@dataclass(frozen=True, eq=False)
class AnonFace:
    """One face-frame to hide: its box (always masked) and, when served, its synthetic face."""

    track_id: int
    frame_index: int
    box: np.ndarray  # [4] float32 x0, y0, x1, y1 in source px
    landmarks: np.ndarray  # [5, 2] float32 in source px (the identity audit aligns faces with them)
    synthetic: FaceRestoration | None  # None: the mask alone (the search could not serve it)
    crop_to_frame: np.ndarray | None = None  # [2, 3] the aligned crop's affine (with `synthetic`)
    crop_size: int = 0  # side of the aligned crop in source px (with `synthetic`)
    kind: str = "detected"  # how the face-frame was found (pipeline.anon.scan.KINDS)
    fallback: str | None = None  # why it has no synthetic face ("no model", "too small", "profile", ...)


def mask_box(box: np.ndarray, grow: float, scale: float) -> np.ndarray:
    """The face box scaled by `grow` about its centre, in output px (x `scale`): [4] float64."""
    b = np.asarray(box, np.float64) * scale
    c, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) / 2 * grow
    return np.concatenate([c - half, c + half])


def apply_mask(image: np.ndarray, box: np.ndarray, anon: AnonConfig) -> None:
    """Mask the ellipse inscribed in `box` [4] (output px) of `image` [H, W, 3] float32, in place."""
    import cv2

    h, w = image.shape[:2]
    half = (box[2:] - box[:2]) / 2
    feather = max(2.0, 0.15 * float(half.max()))
    x0, y0 = (np.floor(box[:2] - feather).astype(int)).clip(0, None)
    x1, y1 = np.ceil(box[2:] + feather).astype(int)
    x1, y1 = min(int(x1), w), min(int(y1), h)
    if x1 <= x0 or y1 <= y0 or half.min() <= 0:
        return
    region = image[y0:y1, x0:x1]
    if anon.fallback == "fill":
        inner = region.reshape(-1, 3).mean(0)
        masked: np.ndarray = np.broadcast_to(inner, region.shape).astype(np.float32)
    else:
        cells = max(1, anon.fallback_cells)
        # cells across the (enlarged) face, whatever part of it lies inside the frame
        nx = max(1, round(cells * (x1 - x0) / (2 * half[0])))
        ny = max(1, round(cells * (y1 - y0) / (2 * half[1])))
        small = cv2.resize(region, (nx, ny), interpolation=cv2.INTER_AREA)
        big = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        masked = np.asarray(cv2.GaussianBlur(big, (0, 0), max(1.0, 0.5 * (x1 - x0) / nx)), np.float32)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    c = (box[:2] + box[2:]) / 2
    # distance outside the ellipse, in px (approximately): 0 inside, then a feathered ramp
    r = np.sqrt(((xx - c[0]) / half[0]) ** 2 + ((yy - c[1]) / half[1]) ** 2)
    outside = (r - 1.0) * float(half.min())
    alpha = np.clip(1.0 - outside / feather, 0.0, 1.0).astype(np.float32)[..., None]
    region[:] = region * (1 - alpha) + masked * alpha


def anonymize_frame(image: np.ndarray, faces: Sequence[AnonFace], gray: bool, cfg: Config) -> np.ndarray:
    """One output frame ([H*k, W*k, 3], the source dtype): upscaled by cfg.upscale, every face masked,
    synthetic faces pasted over their masks."""
    from pipeline.frame.compose import ComposeSettings, FacePaste, paste_faces

    up = np.asarray(upscale(image, cfg.upscale.scale, cfg.upscale.method))
    if not faces:
        return up
    scale = up.shape[1] / image.shape[1]
    peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(up.dtype, 1.0)
    work = up.astype(np.float32) / peak
    for f in faces:
        apply_mask(work, mask_box(f.box, cfg.anon.mask_grow, scale), cfg.anon)
    pastes = [
        FacePaste(
            f.synthetic.image,
            rescale_affine(
                f.crop_to_frame, src_scale=f.synthetic.image.shape[0] / f.crop_size, dst_scale=scale
            ),
        )
        for f in faces
        if f.synthetic is not None and f.crop_to_frame is not None
    ]
    if pastes:
        work = paste_faces(work, pastes, gray=gray, settings=ComposeSettings(tone_sigma=PASTE_TONE_SIGMA))
    out = np.clip(work, 0, 1)
    if peak == 1.0:
        return out.astype(up.dtype)
    return (out * peak + 0.5).astype(up.dtype)


def measure_frame(
    original: np.ndarray, output: np.ndarray, faces: Sequence[AnonFace]
) -> dict[tuple[int, int], float]:
    """SFace cosine between each face of `original` and the same place in `output` (scaled)."""

    scale = output.shape[1] / original.shape[1]
    out = {}
    for f in faces:
        marks = np.asarray(f.landmarks, np.float32)
        a = embed_face(_as_uint8(original), f.box, marks)
        b = embed_face(_as_uint8(output), f.box * scale, marks * scale)
        out[(f.track_id, f.frame_index)] = cosine(a, b)
    return out


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return image
