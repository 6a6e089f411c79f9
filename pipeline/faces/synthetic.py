"""Synthetic footage with real faces: scikit-image portraits composited into moving, cut clips.

Used by the tests, the scan benchmark and the offline demo. The photographs come from the installed
scikit-image package (a development dependency, imported only when a clip is rendered; never copied
into the repository).
Every clip carries its ground truth: which face is where in each frame, and which frames start a
new shot. Clips are rendered sharp at high resolution and then degraded like archive footage
(downscale, blur, grain, gray, low contrast).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

# Astronaut (Eileen Collins) head, with a margin: rows, columns of skimage.data.astronaut().
_HEAD = (slice(20, 250), slice(120, 330))
# Her 5 landmarks inside that crop (image-left eye first), measured once with YuNet on the clean crop.
_HEAD_LANDMARKS = np.array(
    [[82.4, 84.3], [124.7, 84.3], [103.1, 107.3], [84.7, 121.4], [122.1, 123.3]], np.float32
)


@dataclass(frozen=True)
class Sprite:
    rgb: np.ndarray  # [h, w, 3] float32 0..1
    alpha: np.ndarray  # [h, w] float32 0..1, a soft ellipse around the head
    landmarks: np.ndarray  # [5, 2] in sprite pixels


def face_sprites() -> list[Sprite]:
    """Two different-looking faces: the astronaut, and her mirror image darkened (a second person)."""
    from skimage.data import astronaut

    head = astronaut()[_HEAD].astype(np.float32) / 255.0
    h, w = head.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((xx + 0.5 - w / 2) / (w * 0.48)) ** 2 + ((yy + 0.5 - h / 2) / (h * 0.5)) ** 2
    alpha = np.clip((1.0 - r) / 0.15, 0.0, 1.0).astype(np.float32)
    mirrored = head[:, ::-1] * 0.8
    marks_m = _HEAD_LANDMARKS.copy()
    marks_m[:, 0] = w - marks_m[:, 0]
    marks_m = marks_m[[1, 0, 2, 4, 3]]  # left/right swap under the mirror
    return [Sprite(head, alpha, _HEAD_LANDMARKS), Sprite(np.ascontiguousarray(mirrored), alpha, marks_m)]


@dataclass(frozen=True)
class Placement:
    face: int  # which sprite (also the identity in the ground truth)
    start: tuple[float, float]  # sprite top-left at the first frame of the shot (hr pixels)
    end: tuple[float, float]  # ... and at the last frame
    scale: tuple[float, float]  # sprite scale at the first and last frame (zoom)
    roll: tuple[float, float] = (0.0, 0.0)  # in-plane rotation about the sprite's centre, degrees, first/last


@dataclass(frozen=True)
class ShotSpec:
    length: int
    placements: tuple[Placement, ...]
    background_seed: int


@dataclass
class Clip:
    frames: list[np.ndarray]  # [H, W, 3] uint8 RGB, degraded
    hr_frames: list[np.ndarray]  # [H*f, W*f, 3] uint8 RGB, sharp originals
    factor: int  # downscale factor hr -> frames
    cuts: list[int]  # first frame index of every shot after the first
    # per frame: list of (face id, box [4], landmarks [5, 2]) in degraded-frame pixels
    truth: list[list[tuple[int, np.ndarray, np.ndarray]]] = field(default_factory=list)


def background(
    seed: int,
    size: tuple[int, int],  # (w, h)
    scales: tuple[tuple[int, float], ...] = ((4, 0.5), (16, 0.3), (64, 0.2)),  # (cells across, weight)
    tint: tuple[float, float] = (0.5, 1.0),  # range of the per-channel gain
) -> np.ndarray:
    """Smooth random texture [h, w, 3] in [0, 1]: low-frequency noise at a few scales, plus a tint."""
    rng = np.random.default_rng(seed)
    w, h = size
    out = np.zeros((h, w, 3), np.float32)
    for cells, weight in scales:
        noise = rng.random((cells * h // w + 2, cells + 2, 3)).astype(np.float32)
        out += weight * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out * rng.uniform(*tint, 3), 0, 1)


def render(
    shots: list[ShotSpec],
    size: tuple[int, int] = (1280, 720),
    factor: int = 4,
    blur: float = 0.8,
    grain: float = 0.04,
    gray: bool = True,
    contrast: float = 0.7,
    seed: int = 0,
) -> Clip:
    """Render shots at `size`, then degrade: ×`factor` downscale, blur, gray, low contrast, grain."""
    sprites = face_sprites()
    rng = np.random.default_rng(seed)
    w, h = size
    frames: list[np.ndarray] = []
    hr_frames: list[np.ndarray] = []
    truth: list[list[tuple[int, np.ndarray, np.ndarray]]] = []
    cuts: list[int] = []
    for shot in shots:
        if frames:
            cuts.append(len(frames))
        bg = background(shot.background_seed, size)
        for t in range(shot.length):
            a = t / max(shot.length - 1, 1)
            canvas = bg.copy()
            rows = []
            for p in shot.placements:
                sp = sprites[p.face]
                s = (1 - a) * p.scale[0] + a * p.scale[1]
                tx = (1 - a) * p.start[0] + a * p.end[0]
                ty = (1 - a) * p.start[1] + a * p.end[1]
                angle = np.deg2rad((1 - a) * p.roll[0] + a * p.roll[1])
                rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
                centre = np.array([sp.rgb.shape[1], sp.rgb.shape[0]], np.float64) / 2
                offset = np.array([tx, ty]) + s * centre - rot @ centre  # rotation about the centre
                m = np.concatenate([rot, offset[:, None]], axis=1)  # sprite px -> hr px (continuous)
                mc = m.copy()
                mc[:, 2] += mc[:, :2] @ np.array([0.5, 0.5]) - 0.5  # the same map in cv2's pixel indices
                rgb = cv2.warpAffine(sp.rgb, mc, size, flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                al = cv2.warpAffine(sp.alpha, mc, size, flags=cv2.INTER_LINEAR)[..., None]
                canvas = canvas * (1 - al) + rgb * al
                marks = (sp.landmarks @ m[:, :2].T + m[:, 2]) / factor
                sh, sw = sp.rgb.shape[:2]
                quad = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float64) @ m[:, :2].T + m[:, 2]
                box = np.concatenate([quad.min(0), quad.max(0)]).astype(np.float32) / factor
                rows.append((p.face, box, marks.astype(np.float32)))
            hr = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
            lr = cv2.resize(canvas, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
            if blur > 0:
                lr = cv2.GaussianBlur(lr, (0, 0), blur)
            if gray:
                lr = np.repeat(lr @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(lr.shape)
            lr = 0.5 + (lr - 0.5) * contrast
            if grain > 0:
                noise = rng.normal(0, grain, lr.shape[:2]).astype(np.float32)[..., None]
                lr = lr + (noise if gray else rng.normal(0, grain, lr.shape).astype(np.float32))
            frames.append((np.clip(lr, 0, 1) * 255 + 0.5).astype(np.uint8))
            hr_frames.append(hr)
            truth.append(rows)
    return Clip(frames, hr_frames, factor, cuts, truth)


def standard_shots() -> list[ShotSpec]:
    """Three shots: two faces panning past each other; one face zooming in; two faces again."""
    return [
        ShotSpec(
            14,
            (
                Placement(0, (150, 200), (420, 240), (1.0, 1.0)),
                Placement(1, (900, 260), (700, 220), (0.9, 0.9)),
            ),
            background_seed=1,
        ),
        ShotSpec(12, (Placement(0, (500, 150), (420, 110), (0.8, 1.3)),), background_seed=2),
        ShotSpec(
            10,
            (
                Placement(1, (200, 300), (260, 300), (1.1, 1.1)),
                Placement(0, (800, 150), (760, 170), (1.0, 1.05)),
            ),
            background_seed=3,
        ),
    ]


def larger_faces(
    shots: Sequence[ShotSpec], scale: float = 2.0, *, x: float = 0.8, y: float = 0.6
) -> list[ShotSpec]:
    """`shots` with every face `scale` times as large and its path pulled towards the top left (x and
    y scale its start and end positions), so the larger faces stay in the picture."""
    return [
        replace(
            s,
            placements=tuple(
                replace(
                    p,
                    start=(p.start[0] * x, p.start[1] * y),
                    end=(p.end[0] * x, p.end[1] * y),
                    scale=(p.scale[0] * scale, p.scale[1] * scale),
                )
                for p in s.placements
            ),
        )
        for s in shots
    ]


def write_video(
    frames: Sequence[np.ndarray],  # [H, W, 3] uint8 RGB, H and W even
    path: Path,
    rate: str = "25",
    audio: bool = True,
    codec: str = "libx264",
) -> Path:
    """Encode frames (and, with `audio`, a sine tone as FLAC) into `path` with the system ffmpeg."""
    h, w = frames[0].shape[:2]
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", rate, "-i", "pipe:0"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-shortest", "-c:a", "flac"]
    cmd += ["-c:v", codec, "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        cmd += ["-crf", "10", "-preset", "veryfast"]
    cmd.append(str(path))
    data = b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames)
    subprocess.run(cmd, input=data, check=True, capture_output=True)
    return path


def occlude(clip: Clip, frames: range, rect: tuple[float, float, float, float], value: float = 0.35) -> Clip:
    """The clip with a flat bar (x0, y0, x1, y1 in degraded-frame pixels) over `frames` (partial
    occlusion: a passer-by, a pillar); the ground truth keeps the face (it is still there)."""
    f = clip.factor
    lr_frames, hr_frames = list(clip.frames), list(clip.hr_frames)
    x0, y0, x1, y1 = rect
    for t in frames:
        lr = lr_frames[t].copy()
        lr[round(y0) : round(y1), round(x0) : round(x1)] = round(value * 255)
        hr = hr_frames[t].copy()
        hr[round(y0 * f) : round(y1 * f), round(x0 * f) : round(x1 * f)] = round(value * 255)
        lr_frames[t], hr_frames[t] = lr, hr
    return Clip(lr_frames, hr_frames, clip.factor, list(clip.cuts), list(clip.truth))


def fabric(size: tuple[int, int] = (512, 512), seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8 patterned fabric: a tartan of crossing stripes with round spots (eyes for a
    detector that wants to see them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, 3), np.float32) + 0.4
    for period, width, amp in ((64, 14, 0.25), (24, 5, 0.15)):
        out += amp * ((xx % period) < width)[..., None] * rng.uniform(0.3, 1.0, 3)
        out += amp * ((yy % period) < width)[..., None] * rng.uniform(0.3, 1.0, 3)
    spots = ((xx % 48 - 24) ** 2 + (yy % 48 - 24) ** 2) < 36
    out[spots] *= 0.3
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def texture_clip(
    image: np.ndarray,  # [H, W, 3] uint8 RGB: a photograph or texture without human faces
    frames: int = 24,
    size: tuple[int, int] = (88, 72),
    zoom: tuple[float, float] = (1.0, 1.3),
    grain: float = 0.04,
    seed: int = 0,
) -> list[np.ndarray]:
    """A face-free clip: a slow zoom into `image`, reduced to `size` (w, h), gray and grainy."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    aspect = size[0] / size[1]
    out = []
    for t in range(frames):
        z = zoom[0] + (zoom[1] - zoom[0]) * t / max(frames - 1, 1)
        cw = min(w, h * aspect) / z
        ch = cw / aspect
        cx, cy = w / 2 + 0.05 * w * t / frames, h / 2
        crop = image[int(cy - ch / 2) : int(cy + ch / 2), int(cx - cw / 2) : int(cx + cw / 2)]
        lr = cv2.resize(crop.astype(np.float32) / 255, size, interpolation=cv2.INTER_AREA)
        lr = np.repeat((lr @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
        lr = lr + rng.normal(0, grain, lr.shape[:2]).astype(np.float32)[..., None]
        out.append((np.clip(lr, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out
