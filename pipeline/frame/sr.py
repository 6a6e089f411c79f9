"""Learned whole-frame upscaling: single-image super-resolution checkpoints people already own.

Real-ESRGAN (RRDB and the compact anime/video models), SwinIR, HAT and the other architectures
spandrel knows are loaded from the user's file: the state dict is read without executing anything
stored in it (`torch.load(weights_only=True)` or safetensors), and spandrel recognises the
architecture and its hyper-parameters from the tensors. The model runs on tiles, so a 1080p frame
fits any GPU (or CPU memory): tiles overlap by `overlap` source pixels and are blended with linear
ramps across the overlap, so no seam shows. If the model's factor differs from the one asked for,
its output is resized to the requested size (area filter when reducing, Lanczos when enlarging).

    up = LearnedUpscaler.from_file("RealESRGAN_x4plus_anime_6B.pth", scale=2, device="cuda")
    big = up(frame)   # [H, W, 3] uint8 / uint16 / float32 -> [2H, 2W, 3], same dtype
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from pipeline.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from spandrel import ImageModelDescriptor

    Model = Callable[[torch.Tensor], torch.Tensor]  # a network's forward pass

log = logging.getLogger(__name__)

SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def import_spandrel() -> ModuleType:
    """`spandrel`, importable with a CPU build of torch beside a torchvision wheel built for CUDA
    (pipeline.torchvision_ops: its pure-Python parts, all that spandrel's architectures use)."""
    from pipeline.torchvision_ops import allow_torchvision_import

    allow_torchvision_import()
    import spandrel

    return spandrel


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, read without running anything stored in the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise CheckpointError(path, f"not a model file this reads ({', '.join(SUFFIXES)})")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(path, f"cannot be read as a state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(path, "holds no state dict (a TorchScript or pickled model is not read)")
    return state


def load_descriptor(path: str | Path) -> ImageModelDescriptor:
    """spandrel's ImageModelDescriptor for a super-resolution checkpoint (CheckpointError if not one)."""
    spandrel = import_spandrel()
    state = read_state_dict(path)
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(state))
    except Exception as exc:
        raise CheckpointError(path, f"not a super-resolution model spandrel knows ({exc})") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.input_channels not in (1, 3):
        raise CheckpointError(path, f"{desc.architecture.name} is not a single-image RGB/gray model")
    if desc.purpose != "SR" or desc.scale < 1:
        log.warning("%s: %s is a %s model (scale %d), not super-resolution", path, desc.architecture.name,
                    desc.purpose, desc.scale)  # fmt: skip
    return desc


def _ramp(n: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    """[n] blending weights: rising over `overlap` at a side that has a neighbour, 1 elsewhere."""
    w = np.ones(n, np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if left:
            w[:overlap] = np.minimum(w[:overlap], r)
        if right:
            w[n - overlap :] = np.minimum(w[n - overlap :], r[::-1])
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride tile - overlap, the last tile ending at the edge."""
    if tile <= 0 or size <= tile:
        return [0]
    stride = max(1, tile - overlap)
    n = math.ceil((size - tile) / stride) + 1
    return sorted({min(i * stride, size - tile) for i in range(n)})


def run_tiled(model: Model, x: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """model(x) for x [B, C, H, W], run on overlapping tiles and blended: [B, C', sH, sW] float32.

    The B frames' tiles at one position go through the model together (one forward pass per tile
    position), so a batch of frames costs as many passes as one frame."""
    import torch

    b, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(x).float()
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out: torch.Tensor | None = None
    weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=x.device)
    for iy, y0 in enumerate(ys):
        th = min(tile, h)
        for ix, x0 in enumerate(xs):
            tw = min(tile, w)
            piece = model(x[:, :, y0 : y0 + th, x0 : x0 + tw]).float()  # [B, C', s*th, s*tw]
            if out is None:
                out = torch.zeros(
                    b, piece.shape[1], h * scale, w * scale, dtype=torch.float32, device=x.device
                )
            # overlap with the previous tile on each side (the last tile may overlap more)
            ov_top = (ys[iy - 1] + th - y0) if iy > 0 else 0
            ov_left = (xs[ix - 1] + tw - x0) if ix > 0 else 0
            wy = _ramp(th * scale, ov_top * scale, iy > 0, False)
            wy *= _ramp(th * scale, overlap * scale, False, iy < len(ys) - 1)
            wx = _ramp(tw * scale, ov_left * scale, ix > 0, False)
            wx *= _ramp(tw * scale, overlap * scale, False, ix < len(xs) - 1)
            wt = torch.from_numpy(np.outer(wy, wx)).to(x.device)[None, None]  # [1, 1, s*th, s*tw]
            sl = (
                slice(None),
                slice(None),
                slice(y0 * scale, (y0 + th) * scale),
                slice(x0 * scale, (x0 + tw) * scale),
            )
            out[sl] += piece * wt
            weight[sl] += wt
    assert out is not None
    return out / weight.clamp_min(1e-6)


# Tiles sized from free device memory (CUDA): a tile of t x t source pixels for a batch of b frames
# needs about b * t^2 * bytes_per_px, bytes_per_px measured once per model by a probe pass on a
# PROBE x PROBE tile (the peak of allocated memory over the pass, divided by its pixels: activations
# at the model's precision, the pass's own output included). The tiles may use `fraction` of the free
# memory left after the batch's float32 output and blending buffers (b * C' * s^2 * H * W * 4 bytes,
# plus one s^2 * H * W weight plane):
#     t = floor(sqrt(max(0, fraction * free - buffers) / (b * bytes_per_px)))
# rounded down to a multiple of TILE_STEP and clamped to [TILE_FLOOR, TILE_CEILING] (the floor keeps
# tiles large beside their overlap; the ceiling, passes short enough to interleave with the others).
PROBE = 64
TILE_STEP, TILE_FLOOR, TILE_CEILING = 16, 64, 1024


def tile_from_memory(
    free_bytes: int,
    bytes_per_px: float,
    *,
    batch: int,
    frame: tuple[int, int],  # (H, W) source pixels
    out_channels: int,
    scale: int,
    fraction: float,
    overlap: int = 0,
) -> int:
    """The side (source px) of the tiles a batch of frames can run on in `free_bytes` (formula above)."""
    h, w = frame
    buffers = (batch * out_channels + 1) * scale * scale * h * w * 4
    budget = max(0.0, fraction * free_bytes - buffers)
    side = int(math.sqrt(budget / (max(batch, 1) * max(bytes_per_px, 1e-9))))
    side = side // TILE_STEP * TILE_STEP
    floor = max(TILE_FLOOR, -(-(2 * overlap + TILE_STEP) // TILE_STEP) * TILE_STEP)
    return int(min(max(side, floor), TILE_CEILING))


def probe_bytes_per_px(model: Model, channels: int, dtype: torch.dtype, device: torch.device) -> float:
    """Peak CUDA memory one PROBE x PROBE pass of `model` allocates, per source pixel."""
    import torch

    x = torch.rand(1, channels, PROBE, PROBE, device=device).to(dtype)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(device)
    return max(torch.cuda.max_memory_allocated(device) - base, 1) / float(PROBE * PROBE)


def precision(
    device_type: str, supports_half: bool, supports_bfloat16: bool, bf16_ok: bool = True
) -> torch.dtype:
    """The dtype a model runs in: float16 on CUDA where spandrel says the architecture supports it,
    else bfloat16 where it supports that (and the card does), else float32. The CPU runs float32."""
    import torch

    if device_type != "cuda":
        return torch.float32
    if supports_half:
        return torch.float16
    if supports_bfloat16 and bf16_ok:
        return torch.bfloat16
    return torch.float32


_TOPS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}


def _levels() -> dict[float, torch.dtype]:
    import torch

    return {255.0: torch.uint8, 65535.0: torch.int32}  # torch has few uint16 ops: 16 bits in int32


class LearnedUpscaler:
    """A whole-frame upscaler around a spandrel model: `up(image) -> image * scale`, dtype kept;
    `up.many(images)` upscales several frames of one size together (one forward pass per tile).

    On CUDA it runs in half precision where the model allows (`precision`) and, with
    `tile_memory` > 0, on tiles sized from the free device memory (`tile_from_memory`); on the CPU
    (and with `tile_memory` 0) on `tile`-px tiles in float32.
    """

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        scale: int,
        device: str = "cpu",
        tile: int = 256,
        overlap: int = 16,
        batch: int = 1,
        tile_memory: float = 0.0,
    ):
        import torch

        self.device = torch.device(device)
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.dtype = precision(
            self.device.type, bool(descriptor.supports_half), bool(descriptor.supports_bfloat16), bf16_ok
        )
        self.half = self.dtype != torch.float32
        self.desc = descriptor.to(self.device).eval()
        if self.half:
            self.desc = self.desc.to(self.dtype)
        self.scale = scale  # output size = input size * scale
        self.model_scale = int(descriptor.scale)
        self.tile, self.overlap, self.batch = tile, overlap, max(1, int(batch))
        self.tile_memory = tile_memory if self.device.type == "cuda" else 0.0
        self._bytes_per_px: float | None = None
        self.name = descriptor.architecture.name

    @classmethod
    def from_file(
        cls, path: str | Path, *, scale: int, device: str = "cpu", **settings: Any
    ) -> LearnedUpscaler:
        return cls(load_descriptor(path), scale=scale, device=device, **settings)

    def tile_for(self, batch: int, h: int, w: int) -> int:
        """The tile side for `batch` frames of h x w: from free memory on CUDA, else `tile`."""
        if self.tile_memory <= 0 or self.tile == 0:
            return self.tile
        import torch

        if self._bytes_per_px is None:
            self._bytes_per_px = probe_bytes_per_px(
                self.desc, self.desc.input_channels, self.dtype, self.device
            )
        free, _ = torch.cuda.mem_get_info(self.device)
        return tile_from_memory(
            free,
            self._bytes_per_px,
            batch=batch,
            frame=(h, w),
            out_channels=int(self.desc.output_channels),
            scale=self.model_scale,
            fraction=self.tile_memory,
            overlap=self.overlap,
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.many([image])[0]

    def many(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each [H, W, 3] image (one size and dtype) upscaled, `batch` frames per forward pass."""
        out: list[np.ndarray] = []
        for i in range(0, len(images), self.batch):
            out.extend(self._batch(images[i : i + self.batch]))
        return out

    def many_on_device(self, images: Sequence[np.ndarray]) -> list[torch.Tensor | np.ndarray]:
        """`many`, each upscale left on the model's device: an [sH, sW, 3] tensor of exactly the values
        `many` returns (uint8; int32 holding 16-bit values; float32 for float frames), the device
        upscale compose takes (`compose_frame(upscaled=...)`), so it pastes and projects there with
        no copy to the host and back. Where the model's factor differs from the one asked for, the
        resize runs on the host (OpenCV's filters) and that frame comes back as `many` gives it, a
        numpy image."""
        out: list[torch.Tensor | np.ndarray] = []
        for i in range(0, len(images), self.batch):
            out.extend(self._batch(images[i : i + self.batch], on_device=True))
        return out

    @overload
    def _batch(self, images: Sequence[np.ndarray], on_device: Literal[False] = False) -> list[np.ndarray]: ...

    @overload
    def _batch(
        self, images: Sequence[np.ndarray], on_device: Literal[True]
    ) -> list[torch.Tensor | np.ndarray]: ...

    def _batch(
        self, images: Sequence[np.ndarray], on_device: bool = False
    ) -> Sequence[torch.Tensor | np.ndarray]:

        import torch

        first = images[0]
        if first.ndim != 3 or first.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] image, got shape {first.shape}")
        top = _TOPS.get(first.dtype)
        if top is None:
            raise ValueError(f"unsupported dtype {first.dtype}; use uint8, uint16 or float32")
        if any(im.shape != first.shape or im.dtype != first.dtype for im in images):
            raise ValueError("a batch of frames must share one shape and dtype")
        h, w = first.shape[:2]
        x = self._to_device(images, top)  # [B, C, H, W] in the model's dtype
        with torch.inference_mode():
            tile = self.tile_for(len(images), h, w)
            y = run_tiled(self.desc, x, self.model_scale, tile, self.overlap)  # [B, C', sH, sW] float32
        if y.shape[1] == 1:
            y = y.expand(-1, 3, -1, -1)
        y = y.permute(0, 2, 3, 1).clamp(0, 1)  # [B, sH, sW, 3]
        size = (w * self.scale, h * self.scale)
        fits = (y.shape[2], y.shape[1]) == size
        if fits and on_device:
            kept = (
                y if first.dtype == np.float32 else (y * top).round().to(_levels()[top])
            )  # what `many` gives
            return [f.clone(memory_format=torch.contiguous_format) for f in kept]  # not inference tensors
        if fits and first.dtype != np.float32:
            q = (y * top).round().to(_levels()[top]).cpu().numpy()
            return [np.ascontiguousarray(f, dtype=first.dtype) for f in q]
        return [_finish(f, size, self.model_scale > self.scale, top, first.dtype) for f in y.cpu().numpy()]

    def _to_device(self, images: Sequence[np.ndarray], top: float) -> torch.Tensor:
        """[B, C, H, W] on the device in the model's dtype: the integer frames are moved as they are
        (through pinned memory on CUDA) and scaled to [0, 1] there."""
        import torch

        stack = np.stack([np.ascontiguousarray(im) for im in images])  # [B, H, W, 3]
        if stack.dtype == np.uint16:
            stack = stack.astype(np.int32)  # torch has few uint16 ops
        t = torch.from_numpy(stack)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        x = (t.permute(0, 3, 1, 2).to(torch.float32) / top).contiguous()  # [B, 3, H, W]
        if self.desc.input_channels == 1:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).contiguous()  # [B, 1, H, W]
        return x.to(self.dtype)


def _finish(out: np.ndarray, size: tuple[int, int], reduce: bool, top: float, dtype: np.dtype) -> np.ndarray:
    """A model output [sH, sW, 3] float in [0, 1] resized to `size` (w, h) and put in `dtype`."""
    if (out.shape[1], out.shape[0]) != size:
        import cv2

        interp = cv2.INTER_AREA if reduce else cv2.INTER_LANCZOS4
        out = np.clip(cv2.resize(out, size, interpolation=interp), 0, 1)
    if dtype == np.float32:
        return np.ascontiguousarray(out, dtype=np.float32)
    return np.clip(np.rint(out * top), 0, top).astype(dtype)


@functools.lru_cache(maxsize=4)
def cached_upscaler(
    path: str,
    mtime_ns: int,
    scale: int,
    device: str,
    tile: int,
    overlap: int,
    batch: int = 1,
    tile_memory: float = 0.0,
) -> LearnedUpscaler:
    """One loaded model per process and settings (a worker composing many segments loads it once)."""
    return LearnedUpscaler.from_file(
        path, scale=scale, device=device, tile=tile, overlap=overlap, batch=batch, tile_memory=tile_memory
    )
