"""Our own checkpoint format: one safetensors file whose metadata carries the JSON generator config.

It loads fastest (memory-mapped, no pickle at all) and is what `reel models convert` writes. Files are
written atomically: a temporary name in the target directory, renamed at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from pipeline.errors import CheckpointError, OutputError
from pipeline.prior.state import generator_from_state
from pipeline.prior.stylegan2 import Generator, GeneratorConfig

FORMAT_NAME = "reel-stylegan2"
FORMAT_VERSION = "1"


def is_safetensors(path: Path) -> bool:
    """safetensors files start with a little-endian u64 header length, then the JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def save_generator(G: Generator, path: str | Path, source: str = "") -> Path:
    """Write G (float32) and its config; `source` records where the weights came from."""
    from safetensors.torch import save_file

    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(path, "the directory does not exist")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in G.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(G.cfg.to_dict()),
        "source": source,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(path, f"cannot write: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_generator_file(path: str | Path) -> Generator:
    """Read a file written by `save_generator`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT_NAME:
                raise CheckpointError(
                    path, "a safetensors file, but not a reel generator (no config metadata)"
                )
            if meta.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(path, f"format version {meta.get('format_version')} is not supported")
            sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        cfg = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"cannot read safetensors file: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(path, f"invalid generator config: {exc}") from exc
    return generator_from_state(sd, path, cfg=cfg)
