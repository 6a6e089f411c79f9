"""rosinality/stylegan2-pytorch checkpoints (`.pt`: a dict with `g_ema`, optionally `latent_avg`).

Read with torch.load(weights_only=True): tensors and plain containers only. Training checkpoints also
hold the argparse Namespace of the run, which is allowed as data (it has no code path on load).
Name and layout mapping learned from the public repository's model.py.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import CheckpointError, UnsafeCheckpointError
from pipeline.prior.ops import setup_filter
from pipeline.prior.state import OFFICIAL_FILTER, estimate_w_avg, generator_from_state
from pipeline.prior.stylegan2 import Generator


def read_torch_file(path: Path) -> Any:
    import pickle

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            path, f"refused: loading it would need more than tensors and plain data ({str(exc)[:300]})"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(
            path, f"not a readable PyTorch checkpoint (truncated or corrupt?): {exc}"
        ) from exc


def generator_from_rosinality(data: Any, path: Path) -> Generator:
    if isinstance(data, dict) and "g_ema" in data:
        src, latent_avg = data["g_ema"], data.get("latent_avg")
    elif isinstance(data, dict) and "style.1.weight" in data:
        src, latent_avg = data, None
    else:
        keys = sorted(map(str, data))[:8] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(path, f"not a rosinality stylegan2-pytorch checkpoint (no g_ema; has {keys})")
    if not isinstance(src, dict):
        raise CheckpointError(path, "g_ema is not a state dict")
    sd: dict[str, torch.Tensor] = {}
    try:
        i = 1
        while f"style.{i}.weight" in src:
            sd[f"mapping.fc{i - 1}.weight"] = src[f"style.{i}.weight"]
            sd[f"mapping.fc{i - 1}.bias"] = src[f"style.{i}.bias"]
            i += 1
        const = src["input.input"]  # [1, C, 4, 4]
        if const.shape[-1] != 4:
            raise CheckpointError(path, f"constant input of {const.shape[-1]} px (only 4 is supported)")
        sd["synthesis.b4.const"] = const[0]
        n_up = len({m.group(1) for k in src if (m := re.fullmatch(r"to_rgbs\.(\d+)\..*", k))})
        layers = [("synthesis.b4.conv1.", "conv1.", 0)]
        rgbs = [("synthesis.b4.torgb.", "to_rgb1.")]
        for j in range(n_up):
            res = 8 << j
            layers += [(f"synthesis.b{res}.conv0.", f"convs.{2 * j}.", 2 * j + 1)]
            layers += [(f"synthesis.b{res}.conv1.", f"convs.{2 * j + 1}.", 2 * j + 2)]
            rgbs += [(f"synthesis.b{res}.torgb.", f"to_rgbs.{j}.")]
        for ours, theirs, noise_idx in layers:
            sd[ours + "weight"] = src[theirs + "conv.weight"][0]  # [1, O, I, k, k] -> [O, I, k, k]
            sd[ours + "affine.weight"] = src[theirs + "conv.modulation.weight"]
            sd[ours + "affine.bias"] = src[theirs + "conv.modulation.bias"]
            sd[ours + "noise_strength"] = src[theirs + "noise.weight"].reshape([])
            sd[ours + "bias"] = src[theirs + "activate.bias"].reshape(-1)
            sd[ours + "noise_const"] = src[f"noises.noise_{noise_idx}"][0, 0]
        for ours, theirs in rgbs:
            sd[ours + "weight"] = src[theirs + "conv.weight"][0]
            sd[ours + "affine.weight"] = src[theirs + "conv.modulation.weight"]
            sd[ours + "affine.bias"] = src[theirs + "conv.modulation.bias"]
            sd[ours + "bias"] = src[theirs + "bias"].reshape(-1)
    except KeyError as exc:
        raise CheckpointError(path, f"tensor {exc.args[0]} is missing from g_ema") from None
    except (AttributeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(path, f"g_ema tensors of an unexpected shape: {exc}") from None
    # rosinality scales its blur kernels by factor^2 (gain 4 for x2 up-sampling).
    official = setup_filter(OFFICIAL_FILTER) * 4
    for k, v in src.items():
        if (k.endswith("blur.kernel") or k.endswith("upsample.kernel")) and not (
            tuple(v.shape) == (4, 4) and torch.allclose(v.float(), official, atol=1e-6)
        ):
            raise CheckpointError(path, f"{k}: only the [1, 3, 3, 1] blur kernel is supported")
    sd["mapping.w_avg"] = torch.zeros(int(sd["mapping.fc0.weight"].shape[0]))
    G = generator_from_state(sd, path, mapping_lr_multiplier=0.01)
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != G.w_dim:
            raise CheckpointError(path, f"latent_avg must have {G.w_dim} values")
        G.mapping.w_avg.copy_(latent_avg.reshape(-1).float())
    else:
        # Training checkpoints do not store the tracked average: measure it (seeded, deterministic).
        G.mapping.w_avg.copy_(estimate_w_avg(G))
    return G
