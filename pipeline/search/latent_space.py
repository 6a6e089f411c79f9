"""PULSE's Gaussianised W space: latents the optimiser can treat as (nearly) standard normal.

The mapping network's outputs w are far from Gaussian: StyleGAN's final leaky ReLU (slope 0.2) squashes
the negative side. PULSE undoes that squash with a leaky ReLU of slope 5 (its inverse), fits a per-dimension
mean and standard deviation, and searches over v with

    w = lrelu_0.2(v * std + mean)

so that a random v ~ N(0, I) maps to a typical w, and the norm of each per-layer vector v (about sqrt(w_dim))
is a natural constraint (the spherical optimiser keeps it). The fit is seeded, done in chunks so that a
million samples never sit in memory at once, and cached on disk keyed by a hash of the generator's weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pipeline.config import SearchConfig
from pipeline.errors import SearchError

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)

_SLOPE = 0.2  # StyleGAN's leaky ReLU slope; its inverse has slope 1 / 0.2 = 5


def default_cache_dir() -> Path:
    """Where fitted statistics live: $REEL_CACHE_DIR, else ~/.cache/reel."""
    root = os.environ.get("REEL_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "reel"


def model_hash(G: torch.nn.Module) -> str:
    """A content hash of every parameter and buffer (names, shapes, dtypes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(G.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        # view as bytes: bfloat16 has no numpy dtype, so hash the raw storage
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:24]


class GaussianizedW:
    """Per-dimension statistics of lrelu_5(w) and the maps between v (Gaussianised) and w (W space)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        if mean.ndim != 1 or mean.shape != std.shape:
            raise SearchError(
                f"GaussianizedW: mean {tuple(mean.shape)} and std {tuple(std.shape)} must be [w_dim]"
            )
        if not bool((std > 0).all()):
            raise SearchError(
                "GaussianizedW: every standard deviation must be positive (degenerate mapping?)"
            )
        self.mean = mean.float()  # [w_dim]
        self.std = std.float()  # [w_dim]

    @property
    def w_dim(self) -> int:
        return int(self.mean.shape[0])

    def to(self, device: torch.device | str) -> GaussianizedW:
        return GaussianizedW(self.mean.to(device), self.std.to(device))

    def to_w(self, v: torch.Tensor) -> torch.Tensor:
        """v [..., w_dim] (Gaussianised) -> w [..., w_dim]."""
        mean, std = self.mean.to(v.device, v.dtype), self.std.to(v.device, v.dtype)
        return F.leaky_relu(v * std + mean, _SLOPE)

    def from_w(self, w: torch.Tensor) -> torch.Tensor:
        """w [..., w_dim] -> v [..., w_dim]; the exact inverse of to_w."""
        mean, std = self.mean.to(w.device, w.dtype), self.std.to(w.device, w.dtype)
        return (F.leaky_relu(w, 1.0 / _SLOPE) - mean) / std

    @classmethod
    def fit(
        cls,
        G: torch.nn.Module,
        n: int = 100_000,
        seed: int = 0,
        chunk: int = 4096,
        *,
        device: torch.device | str = "cpu",
        cache_dir: Path | None = None,
        use_cache: bool = True,
    ) -> GaussianizedW:
        """Fit mean/std of lrelu_5(mapping(z)) over n seeded z; cached on disk by model hash, n and seed.

        z is drawn on the CPU from a seeded generator, so the fit is the same on every device.
        """
        if n < 2 or chunk < 1:
            raise SearchError(f"GaussianizedW.fit: need n >= 2 and chunk >= 1 (got n={n}, chunk={chunk})")
        path = None
        if use_cache:
            path = (
                (cache_dir or default_cache_dir())
                / "gaussian_fit"
                / f"{model_hash(G)}-n{n}-s{seed}.safetensors"
            )
            if path.exists():
                try:
                    import safetensors.torch  # only for the cache: a bare GPU box may not have it

                    data = safetensors.torch.load_file(path)
                    return cls(data["mean"], data["std"])
                except Exception as exc:  # any unreadable cache entry is only a reason to refit
                    log.warning("ignoring unreadable Gaussian fit cache %s (%s); refitting", path, exc)
        mean, std = _fit_stats(G, n, seed, chunk, device)
        space = cls(mean, std)
        if path is not None:
            _save_atomically({"mean": mean, "std": std}, path)
        return space


@torch.no_grad()
def _fit_stats(
    G: torch.nn.Module, n: int, seed: int, chunk: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    z_dim = int(G.z_dim)  # type: ignore[arg-type]
    rng = torch.Generator().manual_seed(seed)
    total = 0
    s1: torch.Tensor | None = None  # [w_dim] float64 running sum
    s2: torch.Tensor | None = None  # [w_dim] float64 running sum of squares
    for size in _chunks(n, chunk):
        z = torch.randn(size, z_dim, generator=rng).to(device)  # [size, z_dim]
        w = G.mapping(z)[:, 0].double()  # type: ignore[operator]  # [size, w_dim]; layers share one w
        u = F.leaky_relu(w, 1.0 / _SLOPE)
        s1 = u.sum(0) if s1 is None else s1 + u.sum(0)
        s2 = (u * u).sum(0) if s2 is None else s2 + (u * u).sum(0)
        total += size
    assert s1 is not None and s2 is not None
    mean = s1 / total
    var = (s2 - total * mean * mean) / (total - 1)  # unbiased, like torch.std
    return mean.float().cpu(), var.clamp_min(1e-12).sqrt().float().cpu()


def _chunks(n: int, chunk: int) -> Iterable[int]:
    while n > 0:
        yield min(n, chunk)
        n -= chunk


def _save_atomically(data: dict[str, torch.Tensor], path: Path) -> None:
    import safetensors.torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    safetensors.torch.save_file({k: v.contiguous() for k, v in data.items()}, tmp)
    tmp.replace(path)


def fitted_space(
    G: torch.nn.Module,
    settings: SearchConfig,
    *,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
) -> GaussianizedW:
    """The Gaussianised space the search settings ask for (settings.gaussian_samples, settings.seed)."""
    space = GaussianizedW.fit(
        G, n=settings.gaussian_samples, seed=settings.seed, device=device, cache_dir=cache_dir
    )
    return space.to(device)
