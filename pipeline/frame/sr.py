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

import contextlib
import functools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import CheckpointError

log = logging.getLogger(__name__)

SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def import_spandrel() -> Any:
    """`spandrel`, importable with a CPU build of torch beside a torchvision wheel built for CUDA.

    Such a torchvision cannot load its compiled operators, and its import then fails registering
    fake kernels for `torchvision::nms`/`qnms`; defining those two schemas lets the pure-Python parts
    (all that spandrel's super-resolution architectures use) import. Nothing changes otherwise.
    """
    try:
        import spandrel
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        import torch

        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            with contextlib.suppress(RuntimeError):  # already defined
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_spandrel._lib = lib  # type: ignore[attr-defined]  # keep the definitions alive
        import spandrel
    return spandrel


def read_state_dict(path: str | Path) -> dict[str, Any]:
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


def load_descriptor(path: str | Path) -> Any:
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


def run_tiled(model: Any, x: Any, scale: int, tile: int, overlap: int) -> Any:
    """model(x) for x [1, C, H, W], run on overlapping tiles and blended: [1, C', sH, sW]."""
    import torch

    _, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(x)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out: torch.Tensor | None = None
    weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=x.device)
    for iy, y0 in enumerate(ys):
        th = min(tile, h)
        for ix, x0 in enumerate(xs):
            tw = min(tile, w)
            piece = model(x[:, :, y0 : y0 + th, x0 : x0 + tw]).float()  # [1, C', s*th, s*tw]
            if out is None:
                out = torch.zeros(
                    1, piece.shape[1], h * scale, w * scale, dtype=torch.float32, device=x.device
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


class LearnedUpscaler:
    """A whole-frame upscaler around a spandrel model: `up(image) -> image * scale`, dtype kept."""

    def __init__(
        self, descriptor: Any, *, scale: int, device: str = "cpu", tile: int = 256, overlap: int = 16
    ):
        import torch

        self.desc = descriptor.to(torch.device(device)).eval()
        self.device = torch.device(device)
        self.half = self.device.type == "cuda" and bool(descriptor.supports_half)
        if self.half:
            self.desc = self.desc.half()
        self.scale = scale  # output size = input size * scale
        self.model_scale = int(descriptor.scale)
        self.tile, self.overlap = tile, overlap
        self.name = descriptor.architecture.name

    @classmethod
    def from_file(
        cls, path: str | Path, *, scale: int, device: str = "cpu", tile: int = 256, overlap: int = 16
    ) -> LearnedUpscaler:
        return cls(load_descriptor(path), scale=scale, device=device, tile=tile, overlap=overlap)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] image, got shape {image.shape}")
        top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}.get(
            image.dtype
        )
        if top is None:
            raise ValueError(f"unsupported dtype {image.dtype}; use uint8, uint16 or float32")
        h, w = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / np.float32(top))
        x = x.permute(2, 0, 1)[None].to(self.device)  # [1, 3, H, W]
        if self.desc.input_channels == 1:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).contiguous()  # [1, 1, H, W]
        if self.half:
            x = x.half()
        with torch.inference_mode():
            y = run_tiled(self.desc, x, self.model_scale, self.tile, self.overlap)  # [1, C', sH, sW]
        if y.shape[1] == 1:
            y = y.expand(-1, 3, -1, -1)
        out = y[0].permute(1, 2, 0).clamp(0, 1).float().cpu().numpy()  # [sH, sW, 3]
        size = (w * self.scale, h * self.scale)
        if (out.shape[1], out.shape[0]) != size:
            import cv2

            interp = cv2.INTER_AREA if self.model_scale > self.scale else cv2.INTER_LANCZOS4
            out = np.clip(cv2.resize(out, size, interpolation=interp), 0, 1)
        if image.dtype == np.float32:
            return np.ascontiguousarray(out, dtype=np.float32)
        return np.clip(np.rint(out * top), 0, top).astype(image.dtype)


@functools.lru_cache(maxsize=4)
def cached_upscaler(
    path: str, mtime_ns: int, scale: int, device: str, tile: int, overlap: int
) -> LearnedUpscaler:
    """One loaded model per process and settings (a worker composing many segments loads it once)."""
    return LearnedUpscaler.from_file(path, scale=scale, device=device, tile=tile, overlap=overlap)
