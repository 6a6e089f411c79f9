"""Today's numpy/OpenCV compose and consistency projection (pipeline.frame before they moved to
torch), kept only as the reference the torch code is checked against."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.affine import rescale_affine, to_cv2_matrix
from pipeline.config import Config
from pipeline.frame.compose import (
    _GRAIN_BAND,
    _LUMA,
    ComposeSettings,
    FacePaste,
    FacePlacement,
    Steadiness,
    _face_region,
    _finite,
    _footprint,
    _peak,
    _Region,
    _told,
    face_mask,
    fallback_reason,
    grain_seed,
    log,
)
from pipeline.frame.project import Projection, Window, _back_projector, region_psnr
from pipeline.types import VideoFrame


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
    affine: np.ndarray,  # [2, 3] face px -> output px, shifted to the region's origin
    size: int,  # the face square's side in face px
    seed: int,  # the track's grain seed: one pattern along a track
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
    # The noise lives in the face square (about one output pixel per noise pixel) and moves with
    # the face: the same pattern along the whole track, so the grain does not flicker.
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    n = max(16, -(-round(size * scale) // 16) * 16)  # rounded up: the pattern changes only at steps of 16
    pattern = np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32)
    if sigma > 0:
        pattern = np.asarray(cv2.GaussianBlur(pattern, (0, 0), sigma), np.float32)
    m = to_cv2_matrix(rescale_affine(affine, src_scale=n / size))
    h, w = f_luma.shape
    noise = cv2.warpAffine(pattern, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    noise *= np.sqrt(missing) / max(float(_highpass(noise)[inside].std()), 1e-6)
    return face + noise[..., None]


@dataclass(frozen=True, eq=False)
class Pasted:
    """Where a face went: its footprint box in the output and its mask there."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in output pixels
    alpha: np.ndarray  # [y1 - y0, x1 - x0] float32 mask in [0, 1]


def footprint_alpha(
    to_output: np.ndarray, size: int, shape: tuple[int, int], settings: ComposeSettings
) -> Pasted | None:
    """The paste mask of a `size`-px face placed by `to_output` in an output of `shape` (h, w)."""
    import cv2

    affine = np.asarray(to_output, np.float64)
    box = _footprint(affine, size, shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    shifted = affine.copy()
    shifted[:, 2] -= (x0, y0)
    mask = face_mask(size, settings.feather, settings.margin)
    alpha = cv2.warpAffine(mask, to_cv2_matrix(shifted), (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    return Pasted(box, np.asarray(alpha, np.float32))


def paste_face(
    out: np.ndarray,  # [H, W, 3] float32 in [0, 1], modified in place
    face: FacePaste,
    gray: bool = False,
    settings: ComposeSettings | None = None,
) -> Pasted | None:
    """Paste one face into `out`; returns its footprint and mask (None when it is outside)."""
    import cv2

    settings = settings or ComposeSettings()
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
    placed = footprint_alpha(affine, size, out.shape[:2], settings)
    if placed is None:
        return None
    x0, y0, x1, y1 = placed.box
    shifted = affine.copy()
    shifted[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(
        image,
        to_cv2_matrix(shifted),
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    alpha = placed.alpha[..., None]
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
        seed = face.seed
        if seed is None:
            seed = int.from_bytes(np.asarray(face.to_output, np.float64).tobytes()[:8], "little") & 0xFFFFFFFF
        warped = _match_grain(warped, region, alpha[..., 0], shifted, size, seed)
    out[y0:y1, x0:x1] = region * (1 - alpha) + np.clip(warped, 0, 1) * alpha
    return placed


def paste_faces(
    frame: np.ndarray,  # [H, W, 3] upscaled frame, uint8 / uint16 / float32 in [0, 1]
    faces: Sequence[FacePaste],
    gray: bool = False,
    settings: ComposeSettings | None = None,
) -> np.ndarray:
    """The frame with every face pasted in (a new array of the frame's dtype)."""
    peak = _peak(frame)
    out = frame.astype(np.float32) / peak
    for face in faces:
        paste_face(out, face, gray, settings)
    return _to_dtype(out, frame.dtype)


def _apply(wy: np.ndarray, wx: np.ndarray, x: np.ndarray) -> np.ndarray:
    """wy @ x @ wx.T on each channel of x [a, b, C] -> [wy rows, wx rows, C]."""
    a, b, c = x.shape
    rows = (wy @ x.reshape(a, b * c)).reshape(wy.shape[0], b, c)  # [wy rows, b, C]
    return np.matmul(wx, rows)  # [wy rows, wx rows, C]: wx applied to each row's [b, C]


def project_region(
    out: np.ndarray,  # [H, W, C] float32 in [0, 1], the composed output frame (modified in place)
    source: np.ndarray,  # [h, w, C] float in [0, 1], the footage
    win: Window,
    hr_mask: np.ndarray,  # [hy1 - hy0, hx1 - hx0] in [0, 1]: how freely each output pixel may move
    lr_mask: np.ndarray,  # [ly1 - ly0, lx1 - lx0] in {0, 1}: the source pixels that must agree
    steps: int = 12,
    target_db: float = 50.0,  # stop once the region agrees this well
    damping: float = 0.0,  # Tikhonov term of the back-projector, relative to the operator's energy
    floor_db: float = 0.0,  # with damping: undamped steps follow until the region agrees this well
) -> Projection:
    """Back-project the low-resolution residual until the region's downscale equals the source.

    Each step: residual r = source - downscale(out) on the constrained pixels, correction
    pinv(D) r (the minimum-norm image with that downscale), applied weighted by `hr_mask`, then the
    output is clipped to [0, 1] (the clip is a second convex set; alternating keeps both).
    """
    (y0, y1), (x0, x1) = win.ly, win.lx
    (a0, a1), (b0, b1) = win.hy, win.hx
    # float32 inside the loop: twice as fast, and far finer than any output's quantisation.
    f32 = np.float32
    src = np.asarray(source[y0:y1, x0:x1], f32)
    wy, wx = win.wy.astype(f32), win.wx.astype(f32)
    py, px = (_back_projector(w, damping).astype(f32) for w in (win.wy, win.wx))  # [hr, lr]
    region = np.asarray(out[a0:a1, b0:b1], f32)
    m_h = np.asarray(hr_mask, f32)[..., None]
    m_l = np.asarray(lr_mask, f32)[..., None]
    weight = lr_mask.astype(np.float64)

    def psnr_of(r: np.ndarray) -> float:
        mse = float(
            ((r.astype(np.float64) ** 2).mean(axis=2) * weight).sum() / max(float(weight.sum()), 1e-9)
        )
        return 100.0 if mse <= 1e-10 else 10.0 * float(np.log10(1.0 / mse))

    residual = src - _apply(wy, wx, region)
    before = after = psnr_of(residual)
    taken = 0
    while taken < steps and after < target_db:
        region = np.clip(region + m_h * _apply(py, px, residual * m_l), 0.0, 1.0)
        residual = src - _apply(wy, wx, region)
        after = psnr_of(residual)
        taken += 1
    if after < floor_db and damping > 0:
        # Damped steps left too much (footage that is mostly fine grain or noise): exact steps until
        # the floor is reached, amplified grain being the lesser evil than a broken promise.
        py, px = (_back_projector(w, 0.0).astype(f32) for w in (win.wy, win.wx))
        while taken < 2 * steps and after < floor_db:
            region = np.clip(region + m_h * _apply(py, px, residual * m_l), 0.0, 1.0)
            residual = src - _apply(wy, wx, region)
            after = psnr_of(residual)
            taken += 1
    out[a0:a1, b0:b1] = region.astype(out.dtype)
    return Projection(out, before, after, taken)


def _to_dtype(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.clip(out, 0, 1)
    peak = _peak(np.empty(0, dtype))
    if peak == 1.0:
        return out.astype(dtype)
    return (out * peak + 0.5).astype(dtype)


def compose_frame(
    frame: np.ndarray | VideoFrame,  # [h, w, 3] uint8/uint16: the picture upscaled (after cleaning)
    source: np.ndarray | None,  # [h, w, 3]: the footage the faces must agree with; None = `frame`
    placements: Sequence[FacePlacement],  # this frame's faces
    gray: bool,
    cfg: Config,
    upscaler: Callable[[np.ndarray], np.ndarray] | None = None,  # whole frame, dtype kept; None: cfg.upscale
    steadiness: Steadiness | None = None,  # one per run of consecutive frames: adds change figures
    upscaled: np.ndarray | None = None,  # the frame already upscaled (frames upscaled in a batch)
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One output frame and one record per face: upscaled, faces pasted, projected, measured.

    Every face region (a pasted face, or a face the prior cannot serve, which falls back to the
    upscale) is projected after tone and grain matching onto the images whose downscale (the
    search's operator, `pipeline.frame.project.downscale`) is the source there. The records are
    measured on the output as written (after rounding to its dtype): `psnr_in_frame_db` over the
    source pixels that are mostly face, against the bound `search.eps`.
    """
    image = frame.image if isinstance(frame, VideoFrame) else frame
    src = image if source is None else source
    if upscaled is not None:
        up = np.asarray(upscaled)
    elif upscaler is None:
        from pipeline.frame.upscale import upscale

        up = np.asarray(upscale(image, cfg.upscale.scale, cfg.upscale.method))
    else:
        up = np.asarray(upscaler(image))
    if not placements:
        return up, []
    c = cfg.compose
    settings = ComposeSettings(tone_match=c.tone_match, grain_match=c.grain_match)
    scale = up.shape[1] / image.shape[1]
    peak = _peak(up)
    out = up.astype(np.float32) / peak
    lr = src.astype(np.float64) / _peak(src)
    bound = 10.0 * math.log10(1.0 / cfg.search.eps)  # the search's bound (loss.bound_psnr), in frame
    rows: list[tuple[FacePlacement, str | None, _Region | None, float]] = []
    for p in sorted(placements, key=lambda q: q.restoration.track_id):
        r = p.restoration
        resolution = int(r.image.shape[0])
        reason = fallback_reason(p.crop_to_frame, p.crop_size, resolution, scale, image.shape[:2], c)
        to_out = rescale_affine(p.crop_to_frame, src_scale=resolution / p.crop_size, dst_scale=scale)
        if reason is None:
            pasted = paste_face(
                out, FacePaste(r.image, to_out, grain_seed(c.grain_seed, r.track_id)), gray, settings
            )
        else:
            kind = "outside" if reason.endswith("inside the frame") else "size"
            if (r.track_id, kind) not in _told:
                _told.add((r.track_id, kind))
                log.warning("track %d falls back to the consistent upscale: %s", r.track_id, reason)
            pasted = footprint_alpha(to_out, resolution, out.shape[:2], settings)
        region = _face_region(pasted, scale, image.shape[:2], out.shape[:2]) if pasted else None
        before = float("nan")
        if region is not None and c.project:
            proj = project_region(
                out,
                lr,
                region.win,
                region.hr_mask,
                region.lr_weight > 0.25,
                c.project_steps,
                c.project_target_db,
                c.project_damping,
                bound + c.project_margin_db,
            )
            before = proj.psnr_before
        rows.append((p, reason, region, before))
    result = _to_dtype(out, up.dtype)
    written = result.astype(np.float64) / peak
    records = []
    for p, reason, region, before in rows:
        r = p.restoration
        psnr = float("nan")
        if region is not None and (region.lr_weight >= 0.5).any():
            psnr = region_psnr(written, lr, region.win, (region.lr_weight >= 0.5).astype(np.float64))
        records.append(
            {
                "track_id": int(r.track_id),
                "frame": int(r.frame_index),
                "psnr_in_frame_db": _finite(psnr),
                "psnr_before_projection_db": _finite(before),
                "bound_db": round(bound, 3),
                "met_bound_in_frame": bool(math.isfinite(psnr) and psnr >= bound),
                "search_psnr_db": round(float(r.psnr), 3),
                "search_met_bound": bool(r.met_bound),
                "missed_by_db": round(max(0.0, bound - float(r.psnr)), 3),
                "projected": bool(region is not None and c.project),
                "fallback": reason,
            }
        )
    if steadiness is not None:
        steadiness.measure(int(placements[0].restoration.frame_index), src, result, placements, records)
    return result, records
