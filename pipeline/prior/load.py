"""Loading the face prior for a run: a checkpoint file or a zoo name, on the device chosen once.

`load_prior` is what a search worker calls once (a Ray search actor, or the in-process executor);
`model_key` is the weights' content key, part of every search step's key, computed by the planner
without loading anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import CheckpointError
from pipeline.files import file_key

if TYPE_CHECKING:
    from pipeline.prior.stylegan2 import Generator

RANDOM_SOURCE_PREFIX = "random"  # `source` metadata of seeded random (non-face) test generators


@dataclass(frozen=True)
class Prior:
    G: Generator  # on `device`

    description: str  # where the weights came from
    random: bool  # a seeded random test generator, not a face model
    key: str  # content key of the weights (part of the search steps' key)


def resolve_device(name: str) -> str:
    """`auto` is CUDA when there is a GPU, else the CPU; anything else is taken as given."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def model_path(model: str) -> Path:
    """The checkpoint file of a path or a zoo name already in the cache (ModelNotAvailableError
    says where to get it otherwise; nothing is downloaded here: `reel models fetch` does that)."""
    from pipeline.prior.zoo import resolve_model

    return Path(resolve_model(model))


def model_key(model: str) -> str:
    """Content key of the generator's weights (the same as `Prior.key`), without loading them."""

    path = Path(model).expanduser()
    if not path.is_file():
        path = model_path(model)
    return file_key(path)


def describe_model(model: str) -> tuple[str, bool]:
    """(description, random test generator?) of a checkpoint without loading its weights: random
    test generators are only ever written in our safetensors format, with a `source` that says so."""
    path = Path(model).expanduser()
    if not path.is_file():
        path = model_path(model)
    source = ""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                source = (f.metadata() or {}).get("source", "") or "reel"
        except Exception:  # not ours, or unreadable: loading it will say what is wrong
            source = ""
    return (f"{path} ({source})" if source else str(path)), source.startswith(RANDOM_SOURCE_PREFIX)


def load_prior(model: str, device: str, dtype: str = "float32") -> Prior:
    """A generator from a checkpoint path (any supported format) or a model-zoo name."""
    import torch

    from pipeline.prior.checkpoint import load_checkpoint, prepare

    path = model_path(model)
    G, kind = load_checkpoint(path)
    source = kind
    if kind == "reel":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                source = (f.metadata() or {}).get("source", "") or "reel"
        except OSError as exc:
            raise CheckpointError(path, f"cannot read: {exc}") from exc
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    G = prepare(G, device, torch_dtype)
    return Prior(G, f"{path} ({source})", source.startswith(RANDOM_SOURCE_PREFIX), file_key(path))
