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

The same grain in torch, on the frame's device (`Regrain.layer_tensor`, `apply_tensor`: CPU or
CUDA, used by compose when it works on a torch device, so a frame on a GPU stays there): the white
noise is drawn there by a `torch.Generator` seeded from the same (seed, frame index, channels) as
numpy's generator (`noise_seed`), so a frame's grain still depends only on its index and its
measurement, and is the same on a given device for a given seed; the fields are moved to the
nearest sample (OpenCV's rounding), folded at the borders as BORDER_REFLECT_101 and blurred by
`tensor_ops.gaussian_blur` (OpenCV's kernel). Its values are not numpy's (another generator) but its
statistics are: strength, size, frame-to-frame change, colour and motion (tests/frame/test_grain.py
runs every test on both). The numpy path stays the CPU's default and is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import Tensor

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


def noise_seed(seed: int, index: int, channels: int) -> int:
    """The torch generator's seed of frame `index`'s white noise: derived from the same entropy as
    numpy's generator of that frame (seed, index + FRAMES, 7, channels), so it depends on nothing else."""
    state = np.random.SeedSequence([int(seed), index + FRAMES, 7, channels]).generate_state(1, np.uint64)
    return int(state[0]) & 0x7FFF_FFFF_FFFF_FFFF


def _interp_tensor(y: Tensor, profile: np.ndarray) -> Tensor:
    """`np.interp(y, band_centres(n), profile)` of a luma tensor (ends held flat)."""
    p = y.new_tensor(np.asarray(profile, np.float32))
    n = p.numel()
    if n == 1:
        return p[0].expand_as(y)
    pos = (y * n - 0.5).clamp(0, n - 1)
    i0 = pos.floor().long().clamp_(max=n - 2)
    frac = pos - i0.to(pos.dtype)
    return p[i0] + (p[i0 + 1] - p[i0]) * frac


class Regrain:
    """Adds grain of a measured strength, size and colour to output frames, seeded per frame
    index and carried along with the picture's motion."""

    def __init__(self, seed: int = 0, on_device: bool = False) -> None:
        self.seed = int(seed)
        # compose lays the grain in torch (`layer_tensor`) on a CUDA device, and on the CPU with this
        self.on_device = bool(on_device)
        self._white: dict[int, np.ndarray] = {}  # frame index -> its white-noise field (the last FRAMES)
        self._white_t: dict[int, Tensor] = {}  # the same for the torch path (on the frames' device)

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

    # ------------------------------------------------------------------------- torch, on the device

    def _noise_tensor(self, index: int, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        import torch

        field = self._white_t.get(index)
        if field is None or tuple(field.shape) != shape or field.device != device:
            gen = torch.Generator(device=device)
            gen.manual_seed(noise_seed(self.seed, index, shape[2]))
            field = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
            self._white_t[index] = field
        return field

    def field_tensor(
        self,
        index: int,
        shape: tuple[int, int],
        sigma: float,
        device: torch.device,
        motions: tuple[np.ndarray, ...] = (_STILL, _STILL),
        scale: float = 1.0,
        channels: int = 1,
    ) -> Tensor:
        """`field` in torch on `device`: [H, W, channels] float32 grain of unit std per channel."""
        import torch

        from pipeline.frame.tensor_ops import gaussian_blur, reflect101

        m = round(MARGIN * scale)
        big = (shape[0] + 2 * m, shape[1] + 2 * m, channels)
        ys = torch.arange(shape[0], device=device, dtype=torch.float32)[:, None]
        xs = torch.arange(shape[1], device=device, dtype=torch.float32)[None, :]
        total = self._noise_tensor(index, big, device)[m : m + shape[0], m : m + shape[1]].clone()
        for k in range(1, FRAMES):
            noise = self._noise_tensor(index - k, big, device)
            a = np.asarray(motions[k - 1], np.float64)
            c = a[:, 2] * scale + m  # output px of t -> the field's px, rounded to the nearest sample
            ix = reflect101(torch.floor(a[0, 0] * xs + a[0, 1] * ys + c[0] + 0.5).long(), big[1])
            iy = reflect101(torch.floor(a[1, 0] * xs + a[1, 1] * ys + c[1] + 0.5).long(), big[0])
            total += noise.reshape(-1, channels)[iy * big[1] + ix]
        if sigma > 0:
            total = gaussian_blur(total, sigma)
        for old in [k for k in self._white_t if k <= index - FRAMES]:
            del self._white_t[old]
        std = total.reshape(-1, channels).std(dim=0, correction=0)
        return total / std.clamp_min(1e-6)

    def layer_tensor(
        self, image: Tensor, measure: np.ndarray | None, index: int, scale: float
    ) -> Tensor | None:
        """`layer` in torch: [H, W] or [H, W, 3] float32 grain for `image` ([H, W, 3] float32 in [0, 1]
        on its device), on that device (None when nothing was measured)."""
        if measure is None or not np.all(np.isfinite(measure)):
            return None
        g = parse(measure)
        if float(g.profile.max()) <= 0:
            return None
        sigma = max(g.size, MIN_SIZE) * scale
        shape = (int(image.shape[0]), int(image.shape[1]))
        noise = self.field_tensor(index, shape, sigma, image.device, g.motions, scale, 1 if g.mono else 4)
        level = _interp_tensor(image @ image.new_tensor(_LUMA), g.profile)
        if g.mono:
            return noise[..., 0] * level
        rho = min(max(g.rho, 0.0), 1.0)
        own = float(np.sqrt(1.0 - rho)) * noise[..., 1:] + float(np.sqrt(rho)) * noise[..., :1]
        return own * image.new_tensor(np.asarray(g.strengths, np.float32)) * level[..., None]

    def apply_tensor(self, image: Tensor, measure: np.ndarray | None, index: int, scale: float) -> Tensor:
        """`apply` in torch: `image` ([H, W, 3] float32 in [0, 1] on its device) with its grain, clipped
        to [0, 1] (a new tensor; `image` itself when nothing was measured)."""
        grain = self.layer_tensor(image, measure, index, scale)
        if grain is None:
            return image
        return (image + (grain if grain.ndim == 3 else grain[..., None])).clamp_(0.0, 1.0)
