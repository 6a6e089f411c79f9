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
- steady along time: frame t's grain is the normalised sum of the white-noise fields seeded by
  (seed, t), (seed, t - 1) and (seed, t - 2). Consecutive frames share two thirds of their grain,
  so in a still region it changes from frame to frame by sqrt(2/3) of its std, where fresh grain
  every frame (as each frame of real film has) changes by sqrt(2): no boiling, yet it renews
  instead of sitting on the picture like a dirty window. A frame's grain depends only on its index,
  so segments composed apart equal the whole run.

    regrain = Regrain(seed=cfg.film.grain_seed)
    out = regrain.apply(out, frame.grain, frame.index, scale)   # [H, W, 3] float32 in [0, 1]
"""

from __future__ import annotations

import numpy as np

FRAMES = 3  # white-noise fields summed per frame (consecutive frames share FRAMES - 1 of them)
MIN_SIZE = 0.3  # source px: grain finer than a pixel is measured as white; it is at least a pixel wide
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as film.window.luma


def band_centres(bands: int) -> np.ndarray:
    """Brightness (0..1) at the centre of each of `bands` equal bands."""
    return (np.arange(bands) + 0.5) / bands


class Regrain:
    """Adds grain of a measured strength and size to output frames, seeded per frame index."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._white: dict[int, np.ndarray] = {}  # frame index -> its white-noise field (the last FRAMES)

    def _noise(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        field = self._white.get(index)
        if field is None or field.shape != shape:
            rng = np.random.default_rng([self.seed, index + FRAMES, 7])  # t - 2 of frame 0 too
            field = rng.standard_normal(shape, dtype=np.float32)
            self._white[index] = field
        return field

    def field(self, index: int, shape: tuple[int, int], sigma: float) -> np.ndarray:
        """[H, W] float32 grain of unit std for frame `index`, blurred by `sigma` output px."""
        import cv2

        total = np.zeros(shape, np.float32)
        for t in range(index - FRAMES + 1, index + 1):
            total += self._noise(t, shape)
        for old in [k for k in self._white if k <= index - FRAMES]:
            del self._white[old]
        if sigma > 0:
            total = np.asarray(cv2.GaussianBlur(total, (0, 0), sigma), np.float32)
        return total / np.float32(max(float(total.std()), 1e-6))

    def layer(
        self,
        image: np.ndarray,  # [H, W, 3] float32 in [0, 1], the output frame
        measure: np.ndarray | None,  # [bands + 1]: grain std (0..1) per brightness band, then size (src px)
        index: int,  # the frame's index (seeds its grain)
        scale: float,  # output px per source px
    ) -> np.ndarray | None:
        """[H, W] float32 monochrome grain for `image` (None when nothing was measured)."""
        if measure is None or not np.all(np.isfinite(measure)):
            return None
        profile, size = np.asarray(measure[:-1], np.float64), float(measure[-1])
        if float(profile.max()) <= 0:
            return None
        noise = self.field(index, image.shape[:2], max(size, MIN_SIZE) * scale)
        y = (image * _LUMA.reshape(1, 1, 3)).sum(axis=2)
        return noise * np.interp(y, band_centres(profile.size), profile).astype(np.float32)

    def apply(self, image: np.ndarray, measure: np.ndarray | None, index: int, scale: float) -> np.ndarray:
        """`image` ([H, W, 3] float32 in [0, 1]) with its grain `layer` added (a new array; `image`
        itself when nothing was measured)."""
        grain = self.layer(image, measure, index, scale)
        return image if grain is None else np.clip(image + grain[..., None], 0.0, 1.0)

    def apply_to(self, image: np.ndarray, measure: np.ndarray | None, index: int, scale: float) -> np.ndarray:
        """The same on an integer frame (uint8 / uint16), rounded back to its dtype."""
        if measure is None:
            return image
        top = 255.0 if image.dtype == np.uint8 else 65535.0
        out = self.apply(image.astype(np.float32) / np.float32(top), measure, index, scale)
        return np.clip(np.rint(out * top), 0, top).astype(image.dtype)
