"""Film grain at output resolution: added after the upscale, matched to the source, steady in time.

With `film.grain: regrain`, cleaning reduces the grain and measures it (`pipeline.film.grain.
measure_grain`): per frame, its strength per brightness band (what the reduction removed) and its
size (the blur, in source pixels, of white noise whose neighbouring pixels correlate as the grain's
do). Compose puts it back here, on the output frame, after the upscale, the pasted faces and their
projection: the faces carry the same grain as their surroundings, scaled down only where it would
break the promise (`pipeline.frame.compose`); the promise is measured on the output with its grain.

- size scaled by the upscale factor: noise blurred by `size x scale` output pixels, so output
  pixels `scale` apart correlate as neighbouring source pixels did;
- strength by the output's own brightness, per band as measured;
- steady along time and moving with the picture: frame t's grain is the normalised sum of the
  white-noise fields seeded by (seed, t), (seed, t - 1) and (seed, t - 2), each of the older two
  carried along with the picture's motion from its frame to frame t (an affine map per neighbour,
  fitted to the cleaner's flow: `pipeline.film.motion.affine_motion`; white noise is moved to the
  nearest sample, so it stays white, and the sum is blurred once: within half an output pixel of
  the motion, at 1.2-1.4 x the cost of the still grain, colour grain about 3 x). Consecutive frames share two
  thirds of their grain, so along the motion it changes from frame to frame by sqrt(2/3) of its
  std, where fresh grain every frame (as each frame of real film has) changes by sqrt(2): no
  boiling, and in a pan the grain travels with the picture instead of sitting on the screen like a
  dirty window. A frame's grain depends only on its index and its own measurement, so segments
  composed apart equal the whole run. The fields are drawn with a margin around the frame (grain
  the motion brings in from outside is as random as the rest).
- colour as the source's: where the grain residual's channels correlate by rho, each channel's
  grain is sqrt(rho) of a common field plus sqrt(1 - rho) of its own, scaled by the channel's
  strength against luma's; a monochrome source (rho ~ 1, equal strengths) gets one field for all
  three channels, as before.

The measurement (`VideoFrame.grain`) is [bands, profile (bands), size, rho, 3 channel strengths,
motion to t - 1 (2 x 3), motion to t - 2 (2 x 3)]; the older [profile, size] is monochrome and still.

    regrain = Regrain(seed=cfg.film.grain_seed)
    out = regrain.apply(out, frame.grain, frame.index, scale)   # [H, W, 3] float32 in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAMES = 3  # white-noise fields summed per frame (consecutive frames share FRAMES - 1 of them)
MIN_SIZE = 0.3  # source px: grain finer than a pixel is measured as white; it is at least a pixel wide
MARGIN = 24  # source px of grain drawn around the frame for the motion to bring in
MONO_RHO = 0.9  # channels correlated this well, with strengths within MONO_SPREAD: one field for all
MONO_SPREAD = 0.15  # (each strength is measured within a few per cent)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as film.window.luma
_STILL = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Measure:
    """A frame's grain measurement, parsed (`parse`)."""

    profile: np.ndarray  # [bands] grain std (0..1) of luma per brightness band
    size: float  # source px: the blur of white noise that correlates as the grain does
    rho: float = 1.0  # correlation of the channels' grain
    strengths: tuple[float, float, float] = (1.0, 1.0, 1.0)  # each channel's grain std / luma's
    motions: tuple[np.ndarray, ...] = (_STILL, _STILL)  # [2, 3]: frame t px -> frame t - k px

    @property
    def mono(self) -> bool:
        return self.rho >= MONO_RHO and max(self.strengths) - min(self.strengths) <= MONO_SPREAD


def pack(
    profile: np.ndarray, size: float, rho: float, strengths: np.ndarray, motions: list[np.ndarray]
) -> np.ndarray:
    """The measurement vector (float32) of the module's layout."""
    parts = [[profile.size], profile, [size, rho], strengths, *(m.ravel() for m in motions)]
    return np.concatenate([np.asarray(p, np.float64).ravel() for p in parts]).astype(np.float32)


def parse(measure: np.ndarray) -> Measure:
    """A measurement vector (either layout) as a `Measure`."""
    m = np.asarray(measure, np.float64)
    bands = round(float(m[0])) if m.size and m[0] >= 1 else 0
    if bands and m.size == bands + 18:
        motions = (m[bands + 6 : bands + 12].reshape(2, 3), m[bands + 12 : bands + 18].reshape(2, 3))
        strengths = (float(m[bands + 3]), float(m[bands + 4]), float(m[bands + 5]))
        return Measure(m[1 : bands + 1], float(m[bands + 1]), float(m[bands + 2]), strengths, motions)
    return Measure(m[:-1], float(m[-1]))


def band_centres(bands: int) -> np.ndarray:
    """Brightness (0..1) at the centre of each of `bands` equal bands."""
    return (np.arange(bands) + 0.5) / bands


class Regrain:
    """Adds grain of a measured strength, size and colour to output frames, seeded per frame
    index and carried along with the picture's motion."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._white: dict[int, np.ndarray] = {}  # frame index -> its white-noise field (the last FRAMES)

    def _noise(self, index: int, shape: tuple[int, int, int]) -> np.ndarray:
        field = self._white.get(index)
        if field is None or field.shape != shape:
            rng = np.random.default_rng([self.seed, index + FRAMES, 7, shape[2]])  # t - 2 of frame 0 too
            field = rng.standard_normal(shape, dtype=np.float32)
            self._white[index] = field
        return field

    def field(
        self,
        index: int,
        shape: tuple[int, int],
        sigma: float,  # output px of blur
        motions: tuple[np.ndarray, ...] = (_STILL, _STILL),  # source px: frame t -> t - k
        scale: float = 1.0,  # output px per source px
        channels: int = 1,
    ) -> np.ndarray:
        """[H, W, channels] float32 grain of unit std per channel for frame `index`, blurred by
        `sigma` output px, the older fields carried along the `motions`."""
        import cv2

        m = round(MARGIN * scale)
        big = (shape[0] + 2 * m, shape[1] + 2 * m, channels)
        total = np.zeros((*shape, channels), np.float32)
        for k in range(FRAMES):
            noise = self._noise(index - k, big)
            if k == 0:
                total += noise[m : m + shape[0], m : m + shape[1]]
                continue
            # white noise moved to the nearest sample (it stays white: one blur of the sum after)
            a = np.asarray(motions[k - 1], np.float64)
            to_old = np.hstack([a[:, :2], a[:, 2:] * scale + m])  # output px of t -> the field's px
            flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
            moved = cv2.warpAffine(noise, to_old, shape[::-1], flags=flags, borderMode=cv2.BORDER_REFLECT_101)
            total += np.asarray(moved, np.float32).reshape(total.shape)
        if sigma > 0:
            total = np.asarray(cv2.GaussianBlur(total, (0, 0), sigma), np.float32).reshape(total.shape)
        for old in [k for k in self._white if k <= index - FRAMES]:
            del self._white[old]
        _, std = cv2.meanStdDev(total)  # per channel
        return total / np.maximum(std.ravel(), 1e-6).astype(np.float32)

    def layer(
        self,
        image: np.ndarray,  # [H, W, 3] float32 in [0, 1], the output frame
        measure: np.ndarray | None,  # the frame's grain measurement (the module's layout)
        index: int,  # the frame's index (seeds its grain)
        scale: float,  # output px per source px
    ) -> np.ndarray | None:
        """[H, W] float32 monochrome grain for `image`, or [H, W, 3] colour grain (None when nothing
        was measured)."""
        if measure is None or not np.all(np.isfinite(measure)):
            return None
        g = parse(measure)
        if float(g.profile.max()) <= 0:
            return None
        sigma = max(g.size, MIN_SIZE) * scale
        noise = self.field(index, image.shape[:2], sigma, g.motions, scale, 1 if g.mono else 4)
        y = (image * _LUMA.reshape(1, 1, 3)).sum(axis=2)
        level = np.interp(y, band_centres(g.profile.size), g.profile).astype(np.float32)
        if g.mono:
            return noise[..., 0] * level
        rho = min(max(g.rho, 0.0), 1.0)
        own = np.float32(np.sqrt(1.0 - rho)) * noise[..., 1:] + np.float32(np.sqrt(rho)) * noise[..., :1]
        return own * np.asarray(g.strengths, np.float32) * level[..., None]

    def apply(self, image: np.ndarray, measure: np.ndarray | None, index: int, scale: float) -> np.ndarray:
        """`image` ([H, W, 3] float32 in [0, 1]) with its grain `layer` added (a new array; `image`
        itself when nothing was measured)."""
        grain = self.layer(image, measure, index, scale)
        if grain is None:
            return image
        return np.clip(image + (grain if grain.ndim == 3 else grain[..., None]), 0.0, 1.0)

    def apply_to(self, image: np.ndarray, measure: np.ndarray | None, index: int, scale: float) -> np.ndarray:
        """The same on an integer frame (uint8 / uint16), rounded back to its dtype."""
        if measure is None:
            return image
        top = 255.0 if image.dtype == np.uint8 else 65535.0
        out = self.apply(image.astype(np.float32) / np.float32(top), measure, index, scale)
        return np.clip(np.rint(out * top), 0, top).astype(image.dtype)
