"""Known-answer clips for tests and `scripts/evaluate_film.py`: clean pictures, then known defects.

A clean clip is a real photograph (skimage.data) panned and zoomed smoothly, or any list of frames
(e.g. decoded from an FFmpeg lavfi source). Each defect is added with a seed and returns what it did,
so an evaluation can compare the restored clip with the clean one defect by defect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipeline.film.weave import translate
from pipeline.types import VideoFrame


def pan_zoom(
    photo: np.ndarray,  # [H, W, 3] uint8 photograph, larger than the clip
    size: tuple[int, int],  # clip width, height
    frames: int,
    *,
    pan_px: float = 1.0,  # horizontal pan per frame (px of the clip)
    zoom: float = 0.002,  # relative zoom per frame
) -> list[np.ndarray]:
    """[frames] clean [h, w, 3] uint8 pictures: a smooth pan and zoom across `photo`."""
    import cv2

    w, h = size
    ph, pw = photo.shape[:2]
    out = []
    for t in range(frames):
        s = min(pw / (w + pan_px * frames + 8), ph / (h + 8)) / (1.0 + zoom * t)  # photo px per clip px
        cx = pw / 2 + (t - frames / 2) * pan_px * s
        cy = ph / 2
        m = np.array([[1 / s, 0, w / 2 - cx / s], [0, 1 / s, h / 2 - cy / s]], dtype=np.float64)
        out.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101))
    return out


def moving_square(
    size: tuple[int, int], frames: int, *, speed: float = 12.0, side: int = 10
) -> list[np.ndarray]:
    """[frames] [h, w, 3] uint8 pictures: a textured background with a small bright square moving fast."""
    w, h = size
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = (96 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 3, (h, w))).clip(0, 255)
    out = []
    for t in range(frames):
        img = np.repeat(bg[..., None], 3, axis=2).astype(np.uint8)
        span = max(1, w - side - 20)
        x = 10 + int(abs((speed * t) % (2 * span) - span))  # bounces between the sides
        y = int(h / 2 + (h / 4) * np.sin(t / 3.0))
        img[y : y + side, x : x + side] = (230, 200, 60)
        out.append(img)
    return out


def as_frames(images: Sequence[np.ndarray], rate: int = 25) -> list[VideoFrame]:
    """VideoFrames (index, pts in 1/rate units) for a list of pictures."""
    return [VideoFrame(index=i, pts=i, time=Fraction(i, rate), image=im) for i, im in enumerate(images)]


def add_flicker(
    images: Sequence[np.ndarray], amount: float, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each frame's brightness scaled by a random gain 1 +- `amount` (per channel, mostly common).

    Returns the pictures and the [n, 3] gains."""
    rng = np.random.default_rng(seed)
    common = rng.uniform(-amount, amount, (len(images), 1))
    g = 1.0 + common + rng.uniform(-amount / 4, amount / 4, (len(images), 3))
    out = [
        np.clip(im.astype(np.float32) * gi, 0, 255).astype(np.uint8) for im, gi in zip(images, g, strict=True)
    ]
    return out, g


def add_local_flicker(images: Sequence[np.ndarray], amount: float, seed: int = 0) -> list[np.ndarray]:
    """Each frame's brightness scaled by a field of gains that varies smoothly across the frame and
    randomly from frame to frame (a tilt in x and y and a bowl, log gains of std about `amount`
    at the corners), with no mean brightness change of its own."""
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        h, w = im.shape[:2]
        y, x = np.mgrid[0:h, 0:w]
        x, y = (x + 0.5) / w - 0.5, (y + 0.5) / h - 0.5
        c = rng.normal(0.0, amount, 3)
        log_gain = 2 * c[0] * x + 2 * c[1] * y + 4 * c[2] * (x * x + y * y - 1 / 6)
        out.append(
            np.clip(im.astype(np.float32) * np.exp(log_gain)[..., None] + 0.5, 0, 255).astype(np.uint8)
        )
    return out


@dataclass(frozen=True)
class Speck:
    frame: int
    x: int
    y: int
    radius: float
    value: int  # 0..255 (dark dirt or bright dust)


def add_specks(
    images: Sequence[np.ndarray], per_frame: int, seed: int = 0, radius: tuple[float, float] = (1.5, 4.0)
) -> tuple[list[np.ndarray], list[Speck]]:
    """Round soft-edged specks, dark and bright, each in one frame only."""
    rng = np.random.default_rng(seed)
    out, specks = [], []
    for t, im in enumerate(images):
        h, w = im.shape[:2]
        img = im.astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(per_frame):
            r = float(rng.uniform(*radius))
            x, y = int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8))
            v = int(rng.choice([rng.integers(0, 30), rng.integers(225, 256)]))
            a = np.clip(r + 0.5 - np.hypot(xx - x, yy - y), 0, 1)[..., None]  # soft edge
            img = img * (1 - a) + v * a
            specks.append(Speck(t, x, y, r, v))
        out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    return out, specks


def add_scratches(
    images: Sequence[np.ndarray], xs: Sequence[int], value: int = 235, width: int = 2, drift: float = 0.3
) -> list[np.ndarray]:
    """Vertical line scratches at columns `xs` (drifting a little, down the whole frame)."""
    out = []
    for t, im in enumerate(images):
        img = im.copy()
        for x0 in xs:
            x = round(x0 + drift * float(np.sin(t / 4.0)))
            img[:, x : x + width] = (0.3 * img[:, x : x + width] + 0.7 * value).astype(np.uint8)
        out.append(img)
    return out


def add_weave(
    images: Sequence[np.ndarray], amount: float, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each frame moved by a random shift of up to `amount` px in x and y; returns pictures, [n, 2] shifts."""

    rng = np.random.default_rng(seed)
    d = rng.uniform(-amount, amount, (len(images), 2))
    out = []
    for im, di in zip(images, d, strict=True):
        moved = translate(im.astype(np.float32) / 255.0, di)
        out.append(np.clip(moved * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return out, d


def add_grain(images: Sequence[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    """Monochrome Gaussian grain of std `sigma` (8-bit levels), softened to about a pixel."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        n = np.asarray(cv2.GaussianBlur(rng.standard_normal(im.shape[:2]).astype(np.float32), (0, 0), 0.6))
        n = n * np.float32(sigma / max(float(n.std()), 1e-6))
        out.append(np.clip(im.astype(np.float32) + n[..., None] + 0.5, 0, 255).astype(np.uint8))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 pictures (or stacks)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def camera_clip(
    photo: np.ndarray,  # [H, W, 3] uint8 photograph, a good deal larger than the clip
    size: tuple[int, int],  # clip width, height
    frames: int,
    *,
    pan_px: float = 2.0,  # steady pan per frame (px of the clip)
    sway_px: float = 4.0,  # ... plus a smooth handheld sway of this amplitude (x; half of it in y)
    light: float = 0.08,  # scene brightness goes smoothly from 1 - light to 1 + light over the clip
    sprite: np.ndarray | None = None,  # [h, w, 3] uint8 an object crossing the picture (an ellipse of it)
    sprite_px: float = 5.0,  # ... its speed across the picture (px per frame, against the pan)
    switch: float = 0.0,  # a light switched on half way: brightness x (1 + switch) from then on
) -> list[np.ndarray]:
    """[frames] clean [h, w, 3] uint8 pictures of a camera moving over `photo` as a camera does:
    sub-pixel positions along a smooth path (a pan with a sway about it), light changing slowly, and
    an object moving on its own. Nothing here is a film defect: cleaning should leave it all."""
    import cv2

    w, h = size
    ph, pw = photo.shape[:2]
    travel = pan_px * frames + 2 * sway_px + 8
    s = min((pw - 2) / (w + travel), (ph - 2) / (h + sway_px + 8))  # photo px per clip px
    small = cv2.resize(photo, (round(pw / s), round(ph / s)), interpolation=cv2.INTER_AREA)
    t = np.arange(frames, dtype=np.float64)
    xs = sway_px + 4 + pan_px * t + sway_px * np.sin(2 * np.pi * t / 24.0)
    ys = (small.shape[0] - h) / 2 + 0.5 * sway_px * np.sin(2 * np.pi * t / 37.0 + 1.0)
    gains = (1.0 - light * np.cos(np.pi * t / max(1, frames - 1))) * np.where(
        t >= frames // 2, 1.0 + switch, 1.0
    )
    out = []
    for i in range(frames):
        m = np.array([[1.0, 0.0, -xs[i]], [0.0, 1.0, -ys[i]]])
        img = cv2.warpAffine(small, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
        img = img.astype(np.float32)
        if sprite is not None:
            _paste_sprite(img, sprite, (w - sprite.shape[1]) - sprite_px * i, h * 0.45 + 3 * np.sin(i / 5.0))
        out.append(np.clip(img * np.float32(gains[i]) + 0.5, 0, 255).astype(np.uint8))
    return out


def _paste_sprite(img: np.ndarray, sprite: np.ndarray, x: float, y: float) -> None:
    """`sprite` drawn into float `img` as a soft-edged ellipse with its top left at (x, y)."""
    import cv2

    sh, sw = sprite.shape[:2]
    yy, xx = np.mgrid[0:sh, 0:sw]
    r = np.hypot((xx - sw / 2 + 0.5) / (sw / 2), (yy - sh / 2 + 0.5) / (sh / 2))
    alpha = np.clip((1.0 - r) * 6.0, 0.0, 1.0).astype(np.float32)
    m = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
    h, w = img.shape[:2]
    layer = cv2.warpAffine(sprite.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    img *= 1.0 - a
    img += a * layer
