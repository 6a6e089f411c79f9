"""From a state dict in our (the official stylegan2-ada-pytorch) names to a Generator.

Every loader converts its format's names and layouts to these names, then calls `generator_from_state`,
which reads the architecture from the tensor shapes (resolution, latent sizes, mapping depth, channel
schedule, image channels), checks that every tensor is present with the expected shape, and builds the
module. A checkpoint never has to match "config-f".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import CheckpointError
from pipeline.prior.stylegan2 import Generator, GeneratorConfig

OFFICIAL_FILTER = (1.0, 3.0, 3.0, 1.0)


def infer_config(sd: dict[str, torch.Tensor], path: str | Path, **known: Any) -> GeneratorConfig:
    """GeneratorConfig from tensor shapes; `known` supplies what shapes cannot say (lr multiplier, clamp)."""
    try:
        fc = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
        if not fc or fc != list(range(len(fc))):
            raise CheckpointError(path, "no mapping network (mapping.fc0 ...) found")
        res = sorted(
            int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k))
        )
        expected = [2**i for i in range(2, 2 + len(res))]
        if res != expected:
            raise CheckpointError(path, f"synthesis blocks {res} are not the resolutions 4, 8, 16, ...")
        ch = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in res}
        top = res[-1]
        channel_max = max(ch.values())
        low, high = 0, 1 << 40  # feasible channel_base range: min(base // r, max) == c at every r
        for r, c in ch.items():
            low = max(low, c * r)
            if c < channel_max:
                high = min(high, (c + 1) * r - 1)
        if low > high:
            raise CheckpointError(path, f"channel counts {ch} do not follow min(channel_base / res, max)")
        cfg = GeneratorConfig(
            resolution=top,
            z_dim=int(sd["mapping.fc0.weight"].shape[1]),
            w_dim=int(sd[f"mapping.fc{fc[-1]}.weight"].shape[0]),
            mapping_layers=len(fc),
            channel_base=low,
            channel_max=channel_max,
            img_channels=int(sd[f"synthesis.b{top}.torgb.weight"].shape[0]),
            **known,
        )
    except KeyError as exc:
        raise CheckpointError(path, f"tensor {exc.args[0]} is missing") from None
    except ValueError as exc:
        raise CheckpointError(path, f"unsupported generator: {exc}") from None
    for r, c in ch.items():
        if cfg.channels(r) != c:
            raise CheckpointError(path, f"channel counts {ch} do not follow min(channel_base / res, max)")
    return cfg


def generator_from_state(
    sd: dict[str, torch.Tensor], path: str | Path, cfg: GeneratorConfig | None = None, **known: Any
) -> Generator:
    """Build a Generator and load `sd` (float32, CPU). A missing, extra or misshapen tensor is an error."""
    if cfg is None:
        cfg = infer_config(sd, path, **known)
    G = Generator(cfg)
    want = G.state_dict()
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise CheckpointError(path, f"not a StyleGAN2 generator of the expected layout: {'; '.join(parts)}")
    for k, v in want.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                path, f"tensor {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}"
            )
        if not torch.is_floating_point(sd[k]):
            raise CheckpointError(path, f"tensor {k} is not floating point ({sd[k].dtype})")
    G.load_state_dict({k: v.detach().to(torch.float32) for k, v in sd.items()})
    return G.eval().requires_grad_(False)


@torch.no_grad()
def estimate_w_avg(G: Generator, samples: int = 10000, seed: int = 0) -> torch.Tensor:
    """Mean w over seeded random latents, for checkpoints that do not store the tracked average."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(1000, samples - done)
        z = torch.randn(n, G.z_dim, generator=gen)
        total += G.mapping(z)[:, 0].double().sum(dim=0)
        done += n
    return (total / samples).float()
