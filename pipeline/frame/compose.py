"""Paste restored faces back into the upscaled frame.

Each face goes through the inverse of its alignment affine, under a feathered mask defined in the
aligned square itself: since the square follows smoothed landmarks, the mask moves as steadily as
the face does. The face is tone-matched to the frame by adding the low-pass of the difference
between the upscaled frame and the face (a normalised convolution inside the mask), so brightness
and colour follow the footage while the face keeps its detail. A face smoother than the footage
gets the grain it lacks (strength and grain size measured on the footage it replaces), so it does
not show as a clean patch. Black-and-white footage gets luminance-only faces and stays black and
white.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline.faces.align import to_cv2_matrix

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as for the gray decision
_GRAIN_BAND = 3.0  # px: the coarsest scale measured as grain


@dataclass(frozen=True, eq=False)
class FacePaste:
    """One face to paste: the image and where it goes in the output frame."""

    image: np.ndarray  # [R, R, 3] float32 in [0, 1]
    to_output: np.ndarray  # [2, 3] affine: continuous face pixel -> continuous output pixel


@dataclass(frozen=True)
class ComposeSettings:
    feather: float = 0.12  # width of the mask's soft edge, as a fraction of the face square's side
    margin: float = 0.04  # fully transparent border of the face square (its edge is resampling junk)
    tone_sigma: float = 0.08  # tone-matching low-pass, as a fraction of the face square's side
    tone_match: bool = True
    grain_match: bool = True  # add grain to faces smoother than the footage around them (film grain)


@lru_cache(maxsize=16)
def face_mask(size: int, feather: float, margin: float) -> np.ndarray:
    """[size, size] float32 mask: 1 inside, a smooth ramp over `feather`, 0 in the `margin` border."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    edge = np.minimum(t, 1 - t)  # distance to the nearest side, fraction of the side
    ramp = np.clip((edge - margin) / max(feather, 1e-6), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible kink where the ramp starts
    # Rounded corners: the corner regions of the square are mostly hair and background.
    mask = (np.minimum(ramp[:, None], ramp[None, :]) * np.sqrt(ramp[:, None] * ramp[None, :])).astype(
        np.float32
    )
    mask.setflags(write=False)  # cached and shared: nobody may change it
    return mask


def _highpass(image: np.ndarray) -> np.ndarray:
    import cv2

    return np.asarray(image - cv2.GaussianBlur(image, (0, 0), 1.0))


@lru_cache(maxsize=1)
def _grain_table() -> tuple[np.ndarray, np.ndarray]:
    """Blur sigmas and, for white noise blurred by each, its high-pass / band-pass energy ratio.

    The band stops at a few pixels: grain is fine, while scene content (clouds, walls) lives at
    larger scales and would otherwise be taken for coarse grain.
    """
    import cv2

    noise = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)
    sigmas = np.array([0.0, 0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0])
    ratios = []
    for sigma in sigmas:
        n = cv2.GaussianBlur(noise, (0, 0), sigma) if sigma > 0 else noise
        band = n - cv2.GaussianBlur(n, (0, 0), _GRAIN_BAND)
        ratios.append(float(_highpass(n).std() / band.std()))
    return sigmas, np.array(ratios)


def _robust_std(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (edges barely move it)."""
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _match_grain(
    face: np.ndarray,  # [h, w, 3] the warped face in the output region
    region: np.ndarray,  # [h, w, 3] the upscaled frame under and around it
    alpha: np.ndarray,  # [h, w] the paste mask
    affine: np.ndarray,  # the face's placement: seeds the grain, so a rerun gives the same output
) -> np.ndarray:
    """Add luminance grain to a face that is smoother than the footage around it.

    The footage's grain is measured around the face (where the mask is 0 inside the face's
    bounding box), with robust statistics so edges count little: its strength (high-pass deviation)
    and its size (how much of it survives a one-pixel blur; an upscaled frame has grain about
    `upscale` pixels wide). When the face has less fine-scale energy, noise of that size with the
    missing energy is added.
    """
    import cv2

    inside, ring = alpha > 0.5, alpha < 0.02
    if inside.sum() < 16 or ring.sum() < 64:
        return face
    luma_w = _LUMA.reshape(1, 1, 3)
    f_luma = (face * luma_w).sum(axis=2)
    r_luma = (region * luma_w).sum(axis=2)
    want = _robust_std(_highpass(r_luma)[ring])
    have = _robust_std(_highpass(f_luma)[inside])
    missing = want * want - have * have
    if missing <= (0.002) ** 2:
        return face
    total = _robust_std((r_luma - cv2.GaussianBlur(r_luma, (0, 0), _GRAIN_BAND))[ring])
    sigmas, ratios = _grain_table()
    sigma = float(sigmas[np.argmin(np.abs(ratios - want / max(total, 1e-6)))])
    seed = int.from_bytes(np.asarray(affine, np.float64).tobytes()[:8], "little") & 0xFFFFFFFF
    noise = np.random.default_rng(seed).standard_normal(f_luma.shape).astype(np.float32)
    if sigma > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    noise *= np.sqrt(missing) / max(float(_highpass(noise)[inside].std()), 1e-6)
    return face + noise[..., None]


def _footprint(to_output: np.ndarray, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    corners = np.array([[0, 0, 1], [size, 0, 1], [size, size, 1], [0, size, 1]], np.float64)
    pts = corners @ to_output.T  # [4, 2]
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, shape[1]), min(y1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def paste_faces(
    frame: np.ndarray,  # [H, W, 3] upscaled frame, uint8 / uint16 / float32 in [0, 1]
    faces: Sequence[FacePaste],
    gray: bool = False,
    settings: ComposeSettings | None = None,
) -> np.ndarray:
    """The frame with every face pasted in (a new array of the frame's dtype)."""
    import cv2

    settings = settings or ComposeSettings()
    peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(frame.dtype, 1.0)
    out = frame.astype(np.float32) / peak
    for face in faces:
        image = np.asarray(face.image, np.float32)
        size = image.shape[0]
        affine = np.asarray(face.to_output, np.float64)
        scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # output px per face px
        if scale < 0.75:  # the face is shrunk a lot: pre-reduce so bilinear warping does not alias
            new = max(2, round(size * scale / 0.9))
            image = np.asarray(cv2.resize(image, (new, new), interpolation=cv2.INTER_AREA), np.float32)
            affine = affine.copy()
            affine[:, :2] *= size / new
            size = new
        box = _footprint(affine, size, out.shape[:2])
        if box is None:
            continue
        x0, y0, x1, y1 = box
        shifted = affine.copy()
        shifted[:, 2] -= (x0, y0)
        m = to_cv2_matrix(shifted)
        dsize = (x1 - x0, y1 - y0)
        mask = face_mask(size, settings.feather, settings.margin)
        warped = cv2.warpAffine(image, m, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask, m, dsize, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
        region = out[y0:y1, x0:x1]
        if gray:
            warped = np.repeat((warped @ _LUMA)[..., None], 3, axis=2)
        if settings.tone_match:
            sigma = max(settings.tone_sigma * size * scale, 1.0)
            weight = (alpha > 0.5).astype(np.float32)
            num = cv2.GaussianBlur((region - warped) * weight, (0, 0), sigma)
            den = cv2.GaussianBlur(weight[..., 0], (0, 0), sigma)[..., None]
            warped = warped + num / np.maximum(den, 1e-3)
        if settings.grain_match:
            warped = _match_grain(warped, region, alpha[..., 0], affine)
        out[y0:y1, x0:x1] = region * (1 - alpha) + np.clip(warped, 0, 1) * alpha
    out = np.clip(out, 0, 1)
    if peak == 1.0:
        return out.astype(frame.dtype)
    return (out * peak + 0.5).astype(frame.dtype)
