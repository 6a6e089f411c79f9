"""Where is this invented? The same face searched from K different starts; the per-pixel spread.

Each start is a cold search (the run's settings, a different seed) for the same footage crop. Every
result agrees with the footage when downscaled (that is what the search asks for); where they still
differ from each other, the footage does not pin the face and the prior made the detail up. The
per-pixel standard deviation over the K results is that map: dark = fixed by the footage, bright =
invented. It costs K searches per sampled face, so it runs for a small sample only, once, where the
generator is loaded (a step of the plan, `spread_step`, on a search worker), and is stored in the
work directory (`reel report` re-renders it without searching again).

Only the search's public API is used: `pipeline.search.search.search` and `GaussianizedW`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipeline.config import Config, SearchConfig
from pipeline.files import save_arrays
from pipeline.report.assets import load_crops
from pipeline.types import FaceCrop

if TYPE_CHECKING:
    from pipeline.prior.stylegan2 import Generator
    from pipeline.search.latent_space import GaussianizedW

DISPLAY = 256  # px: stored mean and spread images are reduced to at most this side
_SEED_STRIDE = 7919  # start k of face i uses seed settings.seed + 7919 * (k + 1) + i: never a track's own


@dataclass(frozen=True, eq=False)
class Spread:
    """K restorations of one face-frame from different starts, summarised."""

    track_id: int
    frame_index: int
    mean: np.ndarray  # [D, D, 3] float32 in [0, 1]: the mean of the K results (D <= DISPLAY)
    spread: np.ndarray  # [D, D] float32: per-pixel standard deviation over the K results (0..0.5)
    psnr: tuple[float, ...]  # [K] each result's consistency with the footage (dB, downscaled)
    met_bound: tuple[bool, ...]  # [K] ... and whether it met the search's bound


def sample_tracks(lengths: Mapping[int, int], n: int) -> list[int]:
    """The `n` tracks probed: the longest (ties: lower id), in id order."""
    return sorted(sorted(lengths, key=lambda t: (-lengths[t], t))[: max(0, n)])


class LoadedPrior(Protocol):
    """A loaded generator as a search worker holds it (run.search_steps.SearchModel)."""

    @property
    def G(self) -> Generator: ...  # on `device`

    @property
    def space(self) -> GaussianizedW: ...  # fitted for G

    @property
    def device(self) -> str: ...

    @property
    def lock(self) -> AbstractContextManager[object]: ...  # held while the device searches


def spread_step(model: LoadedPrior, cfg: Config, crops_paths: Sequence[str], out: str) -> dict[str, int]:
    """The plan's step, run where the generator is loaded (`model`: run.search_steps.SearchModel):
    the middle face-frame of each track whose crops are in `crops_paths`, searched from
    cfg.report.spread_k starts; the spreads are stored in `out` (npz)."""

    crops = sample_faces(list(load_crops(Path(p) for p in crops_paths).values()), len(crops_paths))
    with model.lock:  # the device is the search's: one search at a time on a worker (see SearchModel)
        spreads = invented_spread(
            model.G, model.space, crops, cfg.search, k=cfg.report.spread_k, device=model.device
        )
    save_arrays(out, **spread_to_arrays(spreads))
    return {"spread": len(spreads)}


def sample_faces(crops: Sequence[FaceCrop], n: int) -> list[FaceCrop]:
    """`n` face-frames to probe: the middle frame of each of the `n` longest tracks (ties: lower id)."""
    by_track: dict[int, list[FaceCrop]] = {}
    for c in crops:
        by_track.setdefault(c.track_id, []).append(c)
    order = sorted(by_track, key=lambda t: (-len(by_track[t]), t))[: max(0, n)]
    out = []
    for tid in sorted(order):
        cs = sorted(by_track[tid], key=lambda c: c.frame_index)
        out.append(cs[len(cs) // 2])
    return out


def reduce_image(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if image.shape[0] <= side:
        return np.asarray(image, np.float32)
    return np.asarray(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA), np.float32)


def invented_spread(
    G: Generator,  # on `device`
    space: GaussianizedW,  # fitted for G
    crops: Sequence[FaceCrop],
    settings: SearchConfig,
    *,
    k: int,
    device: str = "cpu",
) -> list[Spread]:
    """Search every crop from `k` different cold starts (one batch) and summarise the results."""
    import cv2
    import torch

    from pipeline.search.search import search

    if k < 2:
        raise ValueError(f"invented_spread: k = {k}; the spread needs at least two starts")
    if not crops:
        return []
    resolution = int(G.img_resolution)
    targets, seeds, gray = [], [], []
    for i, c in enumerate(crops):
        img = c.image
        if img.shape[0] > resolution:  # as the search step does: never above the generator's size
            img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(img, np.float32).transpose(2, 0, 1)))
        for j in range(k):
            targets.append(t)  # [3, h, w]
            seeds.append(settings.seed + _SEED_STRIDE * (j + 1) + i)
            gray.append(bool(c.gray))
    result = search(
        G, targets, settings=settings, space=space, gray=torch.tensor(gray), seeds=seeds, device=device
    )
    images = result.images.numpy().transpose(0, 2, 3, 1)  # [F * k, R, R, 3]
    out = []
    side = min(resolution, DISPLAY)
    for i, c in enumerate(crops):
        runs = images[i * k : (i + 1) * k].astype(np.float64)  # [k, R, R, 3]
        std = runs.std(axis=0).mean(axis=-1)  # [R, R]
        out.append(
            Spread(
                c.track_id,
                c.frame_index,
                reduce_image(runs.mean(axis=0).astype(np.float32), side),
                reduce_image(std.astype(np.float32), side),
                tuple(round(float(v), 3) for v in result.psnr[i * k : (i + 1) * k]),
                tuple(bool(v) for v in result.met_bound[i * k : (i + 1) * k]),
            )
        )
    return out


def spread_to_arrays(spreads: Sequence[Spread]) -> dict[str, np.ndarray]:
    """Spreads as npz arrays (the work directory's format)."""
    if not spreads:
        return {"track_id": np.zeros(0, np.int64)}
    return {
        "track_id": np.array([s.track_id for s in spreads], np.int64),
        "frame_index": np.array([s.frame_index for s in spreads], np.int64),
        "mean": np.stack([s.mean for s in spreads]).astype(np.float16),
        "spread": np.stack([s.spread for s in spreads]).astype(np.float16),
        "psnr": np.array([s.psnr for s in spreads], np.float64),
        "met_bound": np.array([s.met_bound for s in spreads], bool),
    }


def spread_from_arrays(a: Mapping[str, np.ndarray]) -> list[Spread]:
    if len(a["track_id"]) == 0:
        return []
    return [
        Spread(
            int(a["track_id"][i]),
            int(a["frame_index"][i]),
            a["mean"][i].astype(np.float32),
            a["spread"][i].astype(np.float32),
            tuple(float(v) for v in a["psnr"][i]),
            tuple(bool(v) for v in a["met_bound"][i]),
        )
        for i in range(len(a["track_id"]))
    ]
