"""Load a generator from any supported file, whatever its format; convert files to our cache format.

Formats, recognised by their content (not their name):
  reel        safetensors + JSON config (ours; fastest)
  rosinality  torch.save zip (or legacy) file with g_ema, read with weights_only=True
  nvidia-pt   stylegan2-ada-pytorch / stylegan3-repo pickle (G_ema persistence records)
  nvidia-tf   original TensorFlow StyleGAN2 pickle ((G, D, Gs) Network records)
No code stored in a file is ever executed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import CheckpointError
from pipeline.prior.stylegan2 import Generator

# First object of a legacy (non-zip) torch.save file.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def detect_format(path: str | Path) -> str:
    """One of "reel", "rosinality", "pickle"; CheckpointError for anything else."""
    from pipeline.prior.cache_format import is_safetensors

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "the file is empty")
    if is_safetensors(path):
        return "reel"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # torch.save's zip container (a truncated one fails later, clearly)
        return "rosinality"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(path, "not a known checkpoint format (safetensors, PyTorch .pt or network .pkl)")


def load_checkpoint(path: str | Path) -> tuple[Generator, str]:
    """(generator on the CPU in float32, format name)."""
    from pipeline.prior import load_nvidia, load_rosinality, safe_pickle
    from pipeline.prior.cache_format import load_generator_file

    path = Path(path)
    kind = detect_format(path)
    if kind == "reel":
        return load_generator_file(path), "reel"
    if kind == "rosinality":
        return load_rosinality.generator_from_rosinality(
            load_rosinality.read_torch_file(path), path
        ), "rosinality"
    data = safe_pickle.load_restricted(path)
    if isinstance(data, int) and data == _TORCH_LEGACY_MAGIC:
        data = load_rosinality.read_torch_file(path)
        return load_rosinality.generator_from_rosinality(data, path), "rosinality"
    if isinstance(data, dict):
        return load_nvidia.generator_from_torch_pickle(data, path), "nvidia-pt"
    return load_nvidia.generator_from_tf_pickle(data, path), "nvidia-tf"


def convert_checkpoint(src: str | Path, dst: str | Path) -> tuple[Generator, str]:
    """Read any supported file and write our safetensors format (atomically). Returns (G, source format)."""
    from pipeline.prior.cache_format import save_generator

    G, kind = load_checkpoint(src)
    save_generator(G, dst, source=f"{kind}:{Path(src).name}")
    return G, kind


def prepare(
    G: Generator, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Generator:
    """Move to device/dtype, inference mode (parameters frozen; gradients still flow to inputs).

    Activations stay in the default layout: channels-last made the latent search 2.5x slower on an
    H200 (batches shrink as faces stop early and truncated synthesis runs at low resolution)."""
    return G.to(device=device, dtype=dtype).eval().requires_grad_(False)
