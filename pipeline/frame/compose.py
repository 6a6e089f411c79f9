"""Paste restored faces back into the upscaled frame.

Each face goes through the inverse of its alignment affine, under a feathered mask defined in the
aligned square itself: since the square follows smoothed landmarks, the mask moves as steadily as
the face does. The face is tone-matched to the frame by adding the low-pass of the difference
between the upscaled frame and the face (a normalised convolution inside the mask), so brightness
and colour follow the footage while the face keeps its detail. A face smoother than the footage
gets the grain it lacks (strength and grain size measured on the footage it replaces), so it does
not show as a clean patch; its pattern is seeded per track and lives in the face square, so it moves
with the face instead of flickering. Black-and-white footage gets luminance-only faces and stays
black and white.

`compose_frame` makes one output frame (the contract the plan's compose step calls): whole-frame
upscale, faces pasted, then every face region projected onto the images whose downscale is the
footage (`pipeline.frame.project`), so the promise "downscaled, the output is the film" holds in
frame coordinates whatever the search reached; film grain at output resolution when asked
(`pipeline.frame.grain`), on the faces too, as much as keeps the promise. Faces the prior cannot
serve (drawn much larger than the generator draws, or mostly outside the frame) are not pasted:
their region keeps the upscale, projected the same way, and the record and the log say why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.affine import rescale_affine, to_cv2_matrix
from pipeline.frame.project import (
    Window,
    largest_share,
    largest_share_tensor,
    project_tensor,
    region_psnr,
    window,
)
from pipeline.frame.steady import Steadiness
from pipeline.frame.tensor_ops import area_shrink, as_tensor, gaussian_blur, robust_std, warp_affine
from pipeline.frame.upscale import upscale
from pipeline.types import FaceRestoration, VideoFrame

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from pipeline.config import ComposeConfig, Config
    from pipeline.frame.grain import Regrain

log = logging.getLogger(__name__)

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as for the gray decision
_GRAIN_BAND = 3.0  # px: the coarsest scale measured as grain


@dataclass(frozen=True, eq=False)
class FacePaste:
    """One face to paste: the image and where it goes in the output frame."""

    image: np.ndarray  # [R, R, 3] float32 in [0, 1]
    to_output: np.ndarray  # [2, 3] affine: continuous face pixel -> continuous output pixel
    seed: int | None = None  # grain seed (one per track keeps grain steady); None: from the affine


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


def _highpass(image: Tensor) -> Tensor:
    return image - gaussian_blur(image, 1.0)


@lru_cache(maxsize=1)
def _grain_table() -> tuple[np.ndarray, np.ndarray]:
    """Blur sigmas and, for white noise blurred by each, its high-pass / band-pass energy ratio.

    The band stops at a few pixels: grain is fine, while scene content (clouds, walls) lives at
    larger scales and would otherwise be taken for coarse grain.
    """
    noise = as_tensor(np.random.default_rng(0).standard_normal((192, 192)), "cpu")
    sigmas = np.array([0.0, 0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0])
    ratios = []
    for sigma in sigmas:
        n = gaussian_blur(noise, float(sigma)) if sigma > 0 else noise
        band = n - gaussian_blur(n, _GRAIN_BAND)
        ratios.append(float(_highpass(n).std(correction=0) / band.std(correction=0)))
    return sigmas, np.array(ratios)


def _match_grain(
    face: Tensor,  # [h, w, 3]: the warped face in the output region
    region: Tensor,  # [h, w, 3]: the upscaled frame under and around it
    alpha: Tensor,  # [h, w]: the paste mask
    affine: np.ndarray,  # [2, 3] face px -> output px, shifted to the region's origin
    size: int,  # the face square's side in face px
    seed: int,  # the track's grain seed: one pattern along a track
) -> Tensor:
    """Add luminance grain to a face that is smoother than the footage around it.

    The footage's grain is measured around the face (where the mask is 0 inside the face's
    bounding box), with robust statistics so edges count little: its strength (high-pass deviation)
    and its size (how much of it survives a one-pixel blur; an upscaled frame has grain about
    `upscale` pixels wide). When the face has less fine-scale energy, noise of that size with the
    missing energy is added.
    """
    inside, ring = alpha > 0.5, alpha < 0.02
    if int(inside.sum()) < 16 or int(ring.sum()) < 64:
        return face
    luma_w = face.new_tensor(_LUMA)
    f_luma, r_luma = face @ luma_w, region @ luma_w
    want = robust_std(_highpass(r_luma)[ring])
    have = robust_std(_highpass(f_luma)[inside])
    missing = want * want - have * have
    if missing <= (0.002) ** 2:
        return face
    total = robust_std((r_luma - gaussian_blur(r_luma, _GRAIN_BAND))[ring])
    sigmas, ratios = _grain_table()
    sigma = float(sigmas[np.argmin(np.abs(ratios - want / max(total, 1e-6)))])
    # The noise lives in the face square (about one output pixel per noise pixel) and moves with
    # the face: the same pattern along the whole track, so the grain does not flicker.
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    n = max(16, -(-round(size * scale) // 16) * 16)  # rounded up: the pattern changes only at steps of 16
    pattern = as_tensor(np.random.default_rng(seed).standard_normal((n, n)), face.device)
    if sigma > 0:
        pattern = gaussian_blur(pattern, sigma)
    m = to_cv2_matrix(rescale_affine(affine, src_scale=n / size))
    h, w = f_luma.shape
    noise = warp_affine(pattern, m, (w, h), border="reflect101")
    noise = noise * (math.sqrt(missing) / max(float(_highpass(noise)[inside].std(correction=0)), 1e-6))
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


@dataclass(frozen=True, eq=False)
class Pasted:
    """Where a face went: its footprint box in the output and its mask there."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in output pixels
    alpha: Tensor  # [y1 - y0, x1 - x0] float32 (the output's device): the mask in [0, 1]


@lru_cache(maxsize=16)
def _mask_on(size: int, feather: float, margin: float, device: str) -> Tensor:
    return as_tensor(face_mask(size, feather, margin), device)


def footprint_alpha(
    to_output: np.ndarray,
    size: int,
    shape: tuple[int, int],
    settings: ComposeSettings,
    device: str | torch.device = "cpu",
) -> Pasted | None:
    """The paste mask of a `size`-px face placed by `to_output` in an output of `shape` (h, w)."""
    affine = np.asarray(to_output, np.float64)
    box = _footprint(affine, size, shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    shifted = affine.copy()
    shifted[:, 2] -= (x0, y0)
    mask = _mask_on(size, settings.feather, settings.margin, str(device))
    return Pasted(box, warp_affine(mask, to_cv2_matrix(shifted), (x1 - x0, y1 - y0)))


def paste_face(
    out: Tensor,  # [H, W, 3] float32 in [0, 1], modified in place
    face: FacePaste,
    gray: bool = False,
    settings: ComposeSettings | None = None,
) -> Pasted | None:
    """Paste one face into `out` (on its device); returns its footprint and mask (None when outside)."""
    settings = settings or ComposeSettings()
    image = as_tensor(face.image, out.device)
    size = image.shape[0]
    affine = np.asarray(face.to_output, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # output px per face px
    if scale < 0.75:  # the face is shrunk a lot: pre-reduce so bilinear warping does not alias
        new = max(2, round(size * scale / 0.9))
        image = area_shrink(image, new)
        affine = affine.copy()
        affine[:, :2] *= size / new
        size = new
    placed = footprint_alpha(affine, size, (out.shape[0], out.shape[1]), settings, out.device)
    if placed is None:
        return None
    x0, y0, x1, y1 = placed.box
    shifted = affine.copy()
    shifted[:, 2] -= (x0, y0)
    warped = warp_affine(image, to_cv2_matrix(shifted), (x1 - x0, y1 - y0), border="replicate")
    alpha = placed.alpha[..., None]
    region = out[y0:y1, x0:x1]
    if gray:
        warped = (warped @ warped.new_tensor(_LUMA))[..., None].expand(-1, -1, 3)
    if settings.tone_match:
        sigma = max(settings.tone_sigma * size * scale, 1.0)
        weight = (alpha > 0.5).to(warped.dtype)
        num = gaussian_blur((region - warped) * weight, sigma)
        den = gaussian_blur(weight[..., 0], sigma)[..., None]
        warped = warped + num / den.clamp_min(1e-3)
    if settings.grain_match:
        seed = face.seed
        if seed is None:
            seed = int.from_bytes(np.asarray(face.to_output, np.float64).tobytes()[:8], "little") & 0xFFFFFFFF
        warped = _match_grain(warped, region, alpha[..., 0], shifted, size, seed)
    out[y0:y1, x0:x1] = region * (1 - alpha) + warped.clamp(0, 1) * alpha
    return placed


def paste_faces(
    frame: np.ndarray,  # [H, W, 3] upscaled frame, uint8 / uint16 / float32 in [0, 1]
    faces: Sequence[FacePaste],
    gray: bool = False,
    settings: ComposeSettings | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """The frame with every face pasted in (a new array of the frame's dtype); the work on `device`."""
    out = as_tensor(frame, device) / _peak(frame)
    for face in faces:
        paste_face(out, face, gray, settings)
    return _to_dtype(out, frame.dtype)


def _is_tensor(x: object) -> bool:
    return x is not None and not isinstance(x, np.ndarray) and hasattr(x, "device")


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()


def _host(up: Tensor | np.ndarray, dtype: np.dtype) -> np.ndarray:
    """An upscaled frame as a numpy image of `dtype` (a tensor is brought from its device)."""
    if isinstance(up, np.ndarray):
        return up
    return _to_host(up).astype(dtype, copy=False)


def _to_host(q: Tensor) -> np.ndarray:
    """A frame's one crossing to the host (for the encoder): uint8 as it is, 16-bit values (int32)
    as 16 bits, through pinned memory from CUDA."""
    import torch

    wide = q.dtype == torch.int32  # 16-bit values: sent as int16 offset by 2^15, 2 bytes a sample
    if wide:
        q = (q - 32768).to(torch.int16)
    if q.device.type == "cuda":
        host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
        host.copy_(q)
    else:
        host = q.cpu()
    out = host.numpy()
    if wide:
        out = out.view(np.uint16)
        out ^= np.uint16(0x8000)  # back to 0 .. 65535
    return out


def _on_device(up: Tensor | np.ndarray, device: str) -> Tensor:
    """An upscaled frame as a float32 tensor on `device` (a tensor already there stays)."""
    import torch

    if isinstance(up, np.ndarray):
        return as_tensor(up, device)
    return up.to(torch.device(device)).to(torch.float32)


def _peak(image: np.ndarray) -> float:
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)


def _to_dtype(out: Tensor | np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A [0, 1] float tensor (or numpy image) as a numpy image of `dtype` (integers rounded half up)."""
    import torch

    peak = _peak(np.empty(0, dtype))
    if isinstance(out, np.ndarray):  # after film regrain (numpy)
        clipped = np.clip(out, 0, 1)
        return clipped.astype(dtype) if peak == 1.0 else (clipped * peak + 0.5).astype(dtype)
    unit = out.clamp(0, 1)
    if peak == 1.0:
        return _to_host(unit).astype(dtype)
    q = (unit * peak + 0.5).to(torch.uint8 if peak == 255.0 else torch.int32)  # truncation: out >= 0
    return _to_host(q).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- one frame, guaranteed


@dataclass(frozen=True, eq=False)
class FacePlacement:
    """Where one restored face goes: its restoration and the alignment it was cropped with."""

    restoration: FaceRestoration
    crop_to_frame: np.ndarray  # [2, 3] continuous crop pixel -> continuous source pixel
    crop_size: int  # S: the crop's side in pixels (the face's native size)


_told: set[tuple[int, str]] = set()  # (track, kind of reason) already logged: said once per track


def fallback_reason(
    crop_to_frame: np.ndarray,
    crop_size: int,
    resolution: int,
    scale: float,
    frame_shape: tuple[int, int],
    cfg: ComposeConfig,
) -> str | None:
    """Why the prior cannot serve this face (None when it can).

    - the face is drawn larger in the output than `max_face_stretch` x the generator's resolution:
      pasting it would paste an upsampled blur;
    - less than `min_inside` of its aligned square lies inside the frame.
    """
    out_size = crop_size * scale
    if out_size > cfg.max_face_stretch * resolution:
        return (
            f"face {out_size:.0f} px in the output, more than {cfg.max_face_stretch:g} x the generator's "
            f"{resolution} px"
        )
    inside = _inside_fraction(np.asarray(crop_to_frame, np.float64), crop_size, frame_shape)
    if inside < cfg.min_inside:
        return f"only {inside:.0%} of the face's square is inside the frame"
    return None


def _inside_fraction(crop_to_frame: np.ndarray, size: int, shape: tuple[int, int], n: int = 16) -> float:
    t = (np.arange(n) + 0.5) / n * size
    gx, gy = np.meshgrid(t, t)
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(n * n)], 1) @ crop_to_frame.T  # [n*n, 2]
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < shape[1]) & (pts[:, 1] >= 0) & (pts[:, 1] < shape[0])
    return float(ok.mean())


def _finite(value: float) -> float | None:
    """A figure for a JSON record: rounded, None when not measured (NaN is not JSON)."""
    return round(float(value), 3) if math.isfinite(value) else None


def grain_seed(base: int, track_id: int) -> int:
    """One grain pattern per track (and per `compose.grain_seed`)."""
    return (int(base) * 1_000_003 + int(track_id) * 7919 + 12345) & 0xFFFFFFFF


@dataclass(frozen=True, eq=False)
class _Region:
    win: Window
    # [hr rows, hr cols] in [0, 1]: how freely the projection may move a pixel (on the frame's device)
    hr_mask: Tensor | np.ndarray
    lr_weight: Tensor | np.ndarray  # [lr rows, lr cols] soft weight: the face's share of each source pixel
    face: np.ndarray  # [lr rows, lr cols] float64 0/1 on the host: the source pixels that are mostly face


def _face_region(
    pasted: Pasted, scale: float, lr_shape: tuple[int, int], hr_shape: tuple[int, int]
) -> _Region | None:
    """The projection window around a pasted face and its masks, worked out where the mask is: on
    the frame's device for a tensor (only the face's source pixels, one byte each, come to the host)."""
    x0, y0, x1, y1 = pasted.box
    lr_box = (
        int(np.floor(x0 / scale)) - 1,
        int(np.floor(y0 / scale)) - 1,
        int(np.ceil(x1 / scale)) + 1,
        int(np.ceil(y1 / scale)) + 1,
    )
    win = window(lr_box, lr_shape, hr_shape)
    if win is None:
        return None
    (a0, a1), (b0, b1) = win.hy, win.hx
    ya, yb = max(y0, a0), min(y1, a1)
    xa, xb = max(x0, b0), min(x1, b1)
    inner = (slice(ya - a0, yb - a0), slice(xa - b0, xb - b0))
    placed = pasted.alpha[ya - y0 : yb - y0, xa - x0 : xb - x0]
    if isinstance(placed, np.ndarray):  # a numpy mask (the tests' numpy reference)
        alpha = np.zeros((a1 - a0, b1 - b0), np.float64)
        if yb > ya and xb > xa:
            alpha[inner] = placed
        lr_alpha = win.wy @ alpha @ win.wx.T  # the mask's downscale: [lr rows, lr cols]
        face = (lr_alpha >= 0.5).astype(np.float64)
        return _Region(win, np.clip(2.0 * alpha, 0.0, 1.0), lr_alpha, face)
    import torch

    dev = placed.device
    alpha_t = torch.zeros((a1 - a0, b1 - b0), dtype=torch.float64, device=dev)
    if yb > ya and xb > xa:
        alpha_t[inner] = placed
    wy, wx = (torch.as_tensor(w, dtype=torch.float64, device=dev) for w in (win.wy, win.wx))
    lr_t = wy @ alpha_t @ wx.T
    face = (lr_t >= 0.5).cpu().numpy().astype(np.float64)
    return _Region(win, (2.0 * alpha_t).clamp_(0.0, 1.0), lr_t, face)


def compose_frame(
    frame: np.ndarray | VideoFrame,  # [h, w, 3] uint8/uint16: the picture upscaled (after cleaning)
    source: np.ndarray | None,  # [h, w, 3]: the footage the faces must agree with; None = `frame`
    placements: Sequence[FacePlacement],  # this frame's faces
    gray: bool,
    cfg: Config,
    upscaler: Callable[[np.ndarray], np.ndarray] | None = None,  # whole frame, dtype kept; None: cfg.upscale
    steadiness: Steadiness | None = None,  # one per run of consecutive frames: adds change figures
    # the frame already upscaled (frames upscaled in a batch), numpy or a tensor on the device
    # (`tensor_ops.upscale_on`: uint8, or int32 holding 16-bit values)
    upscaled: Tensor | np.ndarray | None = None,
    device: str = "cpu",  # where the paste, blend and projection run (torch: CPU or CUDA)
    regrain: Regrain | None = None,  # film regrain: grain of the frame's measurement (`VideoFrame.grain`)
    pasted: list[Pasted] | None = None,  # provenance matte: appended with where each pasted face went
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One output frame and one record per face: upscaled, faces pasted, grain, projected, measured.

    Every face region (a pasted face, or a face the prior cannot serve, which falls back to the
    upscale) is projected onto the images whose downscale (the search's operator,
    `pipeline.frame.project.downscale`) is the source there. With `regrain` and a VideoFrame that
    carries a grain measurement, the whole frame then gets film grain at output resolution
    (`pipeline.frame.grain`), faces the same grain as their surroundings, as much of it as keeps
    each face region at the bound + `compose.project_margin_db` (`grain_share` in its record: 1 =
    all of it). The records are measured on the output as written (after rounding to its dtype):
    `psnr_in_frame_db` over the source pixels that are mostly face, against the bound `search.eps`.
    """
    image = frame.image if isinstance(frame, VideoFrame) else frame
    src = image if source is None else source
    up: Tensor | np.ndarray
    if upscaled is not None:
        up = upscaled if _is_tensor(upscaled) else np.asarray(upscaled)
    elif upscaler is None:
        up = np.asarray(upscale(image, cfg.upscale.scale, cfg.upscale.method))
    else:
        up = np.asarray(upscaler(image))
    scale = up.shape[1] / image.shape[1]
    measure, index = (frame.grain, frame.index) if isinstance(frame, VideoFrame) else (None, 0)
    dtype: np.dtype = up.dtype if isinstance(up, np.ndarray) else image.dtype  # (a tensor: 16 bits in int32)
    grain_on_device = regrain is not None and measure is not None and (regrain.on_device or device != "cpu")
    if not placements and not grain_on_device:
        up = _host(up, dtype)
        if regrain is not None and measure is not None:
            up = regrain.apply_to(up, measure, index, scale)
        return up, []
    peak = _peak(np.empty(0, dtype))
    out = _on_device(up, device) / peak  # [H, W, 3] float32 on the device
    rows = _paste_all(out, placements, scale, image.shape[:2], gray, cfg)
    if pasted is not None:  # faces pasted (not fallbacks, which keep the upscale: nothing synthesised)
        pasted.extend(where for _, reason, where in rows if reason is None and where is not None)
    lr = src.astype(np.float64) / _peak(src) if placements else np.empty((0, 0, 3))
    bound = 10.0 * math.log10(1.0 / cfg.search.eps)  # the search's bound (loss.bound_psnr), in frame
    c = cfg.compose
    regions: list[tuple[_Region | None, float]] = []
    for _, _, where in rows:
        region = _face_region(where, scale, image.shape[:2], (out.shape[0], out.shape[1])) if where else None
        before = float("nan")
        if region is not None and c.project:
            before = _project(out, lr, region, c, bound)
        regions.append((region, before))
    shares: list[float | None] = [None] * len(regions)
    final: Tensor | np.ndarray = out
    if regrain is not None and measure is not None:
        floor = bound + c.project_margin_db
        final, shares = _grained(out, regrain, measure, index, scale, lr, regions, floor, grain_on_device)
    result = _to_dtype(final, dtype)
    records = _records(result.astype(np.float64) / peak, lr, rows, regions, bound, c.project) if rows else []
    for rec, share in zip(records, shares, strict=True):
        if share is not None:
            rec["grain_share"] = round(share, 3)
    if steadiness is not None and placements:
        steadiness.measure(int(placements[0].restoration.frame_index), src, result, placements, records)
    return result, records


def _grained(
    out: Tensor,  # [H, W, 3] float32 in [0, 1] on the device: the frame, faces pasted and projected
    regrain: Regrain,
    measure: np.ndarray,
    index: int,
    scale: float,
    lr: np.ndarray,
    regions: Sequence[tuple[_Region | None, float]],
    floor_db: float,
    on_device: bool,  # the grain laid in torch on `out`'s device (else numpy, on the host)
) -> tuple[Tensor | np.ndarray, list[float | None]]:
    """The frame with its film grain (`pipeline.frame.grain`) and each face's share of it."""
    shares: list[float | None] = [None] * len(regions)
    if on_device:
        layer = regrain.layer_tensor(out, measure, index, scale)
        return (out, shares) if layer is None else _add_grain_tensor(out, layer, lr, regions, floor_db)
    projected = out.cpu().numpy()  # numpy regrain: the frame to the host as float32
    grain = regrain.layer(projected, measure, index, scale)
    return (out, shares) if grain is None else _add_grain(projected, grain, lr, regions, floor_db)


def _add_grain_tensor(
    out: Tensor,  # [H, W, 3] float32 in [0, 1] on the device
    grain: Tensor,  # [H, W] or [H, W, 3] float32 (same device): `Regrain.layer_tensor`
    lr: np.ndarray,
    regions: Sequence[tuple[_Region | None, float]],
    floor_db: float,
) -> tuple[Tensor, list[float | None]]:
    """`_add_grain` on the device: the frame with its grain, and each face's share of it."""
    add = grain if grain.ndim == 3 else grain[..., None].expand(-1, -1, 3)
    share_map = out.new_ones(add.shape[:2])
    shares: list[float | None] = []
    for region, _ in regions:
        if region is None:
            shares.append(None)
            continue
        k = 1.0
        if region.face.any():
            k = largest_share_tensor(out, add, lr, region.win, region.hr_mask, region.face, floor_db)
        (a0, a1), (b0, b1) = region.win.hy, region.win.hx
        hr_mask = (
            as_tensor(region.hr_mask, out.device)
            if isinstance(region.hr_mask, np.ndarray)
            else region.hr_mask
        )
        share_map[a0:a1, b0:b1] *= (1 - (1 - k) * hr_mask).to(share_map.dtype)
        shares.append(k)
    return (out + add * share_map[..., None]).clamp_(0.0, 1.0), shares


def _add_grain(
    out: np.ndarray,  # [H, W, 3] float32 in [0, 1]: the frame, faces pasted and projected
    grain: np.ndarray,  # [H, W] or [H, W, 3] float32: the film grain of the frame (pipeline.frame.grain)
    lr: np.ndarray,  # [h, w, 3] float64: the source
    regions: Sequence[tuple[_Region | None, float]],
    floor_db: float,  # each face region must still agree with the footage this well
) -> tuple[np.ndarray, list[float | None]]:
    """The frame with its grain, faces included, and per face the share of the grain it carries.

    The grain goes on after the projection: before it, the projection would take out of a face
    all the grain the footage can see (the cleaned footage has little), leaving a plastic face in
    grainy surroundings. A face region carries the full grain unless that would bring it below
    `floor_db` (the bound plus the projection's margin), where the grain is scaled down there, to
    the largest share that keeps the floor (`pipeline.frame.project.largest_share`)."""
    add = grain if grain.ndim == 3 else np.repeat(grain[..., None], 3, axis=2)
    share_map = np.ones(add.shape[:2], np.float32)
    shares: list[float | None] = []
    for region, _ in regions:
        if region is None:
            shares.append(None)
            continue
        hr_mask = _as_numpy(region.hr_mask)
        k = (
            largest_share(out, add, lr, region.win, hr_mask, region.face, floor_db)
            if region.face.any()
            else 1.0
        )
        (a0, a1), (b0, b1) = region.win.hy, region.win.hx
        share_map[a0:a1, b0:b1] *= (1 - (1 - k) * hr_mask).astype(np.float32)
        shares.append(k)
    return np.clip(out + add * share_map[..., None], 0.0, 1.0), shares


def _paste_all(
    out: Tensor,  # [H, W, 3] float32 in [0, 1], the upscaled frame (faces pasted in place)
    placements: Sequence[FacePlacement],
    scale: float,
    lr_shape: tuple[int, int],
    gray: bool,
    cfg: Config,
) -> list[tuple[FacePlacement, str | None, Pasted | None]]:
    """Every face pasted (or, where the prior cannot serve it, only its footprint taken), in track
    order: (placement, fallback reason, where it went)."""
    c = cfg.compose
    settings = ComposeSettings(tone_match=c.tone_match, grain_match=c.grain_match)
    rows: list[tuple[FacePlacement, str | None, Pasted | None]] = []
    for p in sorted(placements, key=lambda q: q.restoration.track_id):
        r = p.restoration
        resolution = int(r.image.shape[0])
        reason = fallback_reason(p.crop_to_frame, p.crop_size, resolution, scale, lr_shape, c)
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
            pasted = footprint_alpha(to_out, resolution, (out.shape[0], out.shape[1]), settings, out.device)
        rows.append((p, reason, pasted))
    return rows


def _records(
    written: np.ndarray,  # [H, W, 3] float64 in [0, 1]: the output as written
    lr: np.ndarray,  # [h, w, 3] float64: the source
    rows: Sequence[tuple[FacePlacement, str | None, Pasted | None]],
    regions: Sequence[tuple[_Region | None, float]],
    bound: float,
    project: bool,
) -> list[dict[str, Any]]:
    """One record per face, measured on the output as written."""
    records = []
    for (p, reason, _), (region, before) in zip(rows, regions, strict=True):
        r = p.restoration
        psnr = float("nan")
        if region is not None and region.face.any():
            psnr = region_psnr(written, lr, region.win, region.face)
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
                "projected": bool(region is not None and project),
                "fallback": reason,
            }
        )
    return records


def _project(out: Tensor, lr: np.ndarray, region: _Region, c: ComposeConfig, bound: float) -> float:
    """Project one face region of `out` (a tensor, in place) onto the footage `lr`: PSNR before."""
    (y0, y1), (x0, x1) = region.win.ly, region.win.lx
    (a0, a1), (b0, b1) = region.win.hy, region.win.hx
    projected, before, _, _ = project_tensor(
        out[a0:a1, b0:b1],
        as_tensor(lr[y0:y1, x0:x1], out.device),
        region.win,
        region.hr_mask,
        region.lr_weight > 0.25,
        c.project_steps,
        c.project_target_db,
        c.project_damping,
        bound + c.project_margin_db,
    )
    out[a0:a1, b0:b1] = projected
    return before
