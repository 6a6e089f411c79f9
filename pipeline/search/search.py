"""Batched PULSE search: find, for each face, latents whose image, downscaled, matches its target.

`search` is one pure function over a batch of faces (the projector.py shape): targets may have different
sizes, faces may be cold (random start, PULSE's schedule) or warm (start from the previous frame, smaller
budget, pulled towards it), gray or colour. Each face stops on its own; the batch keeps its shape (see
`pipeline.search.loop`), so a face's result does not depend on which other faces share its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.loop import optimise, render
from pipeline.search.loss import psnr_from_mse
from pipeline.search.state import SearchResult, SearchState
from pipeline.search.targets import TargetBatch, Targets, gray_like, lowres_losses, prepare_targets, subset

__all__ = ["Targets", "random_state", "render", "search"]

log = logging.getLogger(__name__)


def random_state(G: torch.nn.Module, seeds: Sequence[int]) -> SearchState:
    """A cold start per face: v ~ N(0, I) per layer and N(0, 1) noise maps, each face from its own seed.

    Drawn on the CPU from per-face generators, so a face's start depends only on its seed, not on the
    device or on which other faces share its batch.
    """
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)  # type: ignore[arg-type]
    shapes = G.noise_shapes()  # type: ignore[operator]
    lat: list[torch.Tensor] = []
    noise: list[list[torch.Tensor]] = [[] for _ in shapes]
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        lat.append(torch.randn(num_ws, w_dim, generator=rng))
        for i, (h, w) in enumerate(shapes):
            noise[i].append(torch.randn(1, h, w, generator=rng))
    return SearchState(torch.stack(lat), [torch.stack(n) for n in noise])


def _truncated_res(G: torch.nn.Module, batch: TargetBatch, factor: float) -> int | None:
    """The smallest synthesis level at >= factor x the largest target side (None: use the full output)."""
    full = int(G.img_resolution)  # type: ignore[arg-type]
    if factor <= 0:
        return None
    res = 4
    while res < full and res < factor * batch.max_side:
        res *= 2
    return None if res >= full else res


def _start(
    G: torch.nn.Module,
    init: SearchState | None,
    prev: SearchState | None,
    warm: torch.Tensor,
    seeds: Sequence[int],
    dev: torch.device,
) -> SearchState:
    """Where each face's search starts: `init`, else the previous frame's state for warm faces and a
    seeded random draw for cold ones."""
    if init is not None:
        return init.to(dev)
    if prev is None:
        return random_state(G, seeds).to(dev)
    start = prev.to(dev)
    cold = (~warm).nonzero().squeeze(1)
    if cold.numel():  # random draws only for the cold faces (a full set of noise maps is large)
        fresh = random_state(G, [seeds[i] for i in cold.tolist()]).to(dev)
        start = SearchState(start.latents.clone(), [n.clone() for n in start.noise])
        start.latents[cold] = fresh.latents
        for i, n in enumerate(fresh.noise):
            start.noise[i][cold] = n
    return start


def _refine_misses(
    G: torch.nn.Module,
    space: GaussianizedW,
    batch: TargetBatch,
    state: SearchState,
    steps: torch.Tensor,
    images: torch.Tensor,
    mse: torch.Tensor,
    pull_to: SearchState | None,
    settings: SearchConfig,
    dev: torch.device,
) -> torch.Tensor:
    """Faces whose truncated image met the loss but whose full one does not, finished on the full
    synthesis (`state`, `steps` and `images` updated in place); returns the delivered images' MSE."""
    miss = mse > settings.eps
    if not bool(miss.any()):
        return mse
    log.debug("search: %d face(s) refined on the full synthesis", int(miss.sum()))
    sub = subset(batch, miss)
    refined, more = optimise(
        G,
        space,
        sub,
        state.select(miss),
        pull_to=pull_to.select(miss) if pull_to is not None else state.select(miss),
        warm=torch.ones(int(miss.sum()), dtype=torch.bool, device=dev),
        # a few faces of any count: compiling a graph for each count would cost more than it saves
        settings=replace(settings, compile="off"),
        max_res=None,
    )
    state.latents[miss] = refined.latents
    for i, n in enumerate(refined.noise):
        state.noise[i][miss] = n
    steps[miss] += more
    with torch.no_grad():
        images[miss] = render(G, space, refined, autocast=settings.autocast)
        mse, _ = lowres_losses(images.clamp(0, 1), batch)  # what is delivered
    return mse


def search(
    G: torch.nn.Module,
    targets: Targets,
    *,
    settings: SearchConfig,
    space: GaussianizedW,
    init: SearchState | None = None,
    prev: SearchState | None = None,
    prev_mask: torch.Tensor | None = None,
    gray: torch.Tensor | bool = False,
    seeds: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> SearchResult:
    """Search a batch of faces; returns per face the latents, the full image and its measured consistency.

    targets: [B, C, h, w] or B tensors [C, h, w] in [0, 1] (sizes may differ; at most G's resolution).
    init: starting latents per face (None: a cold random start from `seeds`, default settings.seed + i).
    prev: the previous frame's state per face: those faces (all, or where prev_mask [B] is True) are warm
        starts: they start from prev (unless init is given), use the warm budget and learning rate and are
        pulled towards prev with settings.pull_weight.
    gray: bool or [B] bool: compare luminance and return a gray image for those faces.
    The loss runs on a truncated synthesis when the targets are small (settings.truncate_factor); the
    full image is then rendered and checked, and a face whose full image misses the bound is refined on
    the full synthesis with a warm budget.
    """
    dev = torch.device(device)
    G_res = int(G.img_resolution)  # type: ignore[arg-type]
    batch = prepare_targets(targets, gray, G_res, dev)
    B = len(batch)
    for name, st in (("init", init), ("prev", prev)):
        if st is not None and len(st) != B:
            raise SearchError(f"search: {name} has {len(st)} faces for {B} targets")
    warm = torch.zeros(B, dtype=torch.bool, device=dev)
    if prev is not None:
        warm = torch.ones_like(warm) if prev_mask is None else prev_mask.to(dev, torch.bool).clone()
    seeds = list(seeds) if seeds is not None else [settings.seed + i for i in range(B)]
    if len(seeds) != B:
        raise SearchError(f"search: {len(seeds)} seeds for {B} targets")

    start = _start(G, init, prev, warm, seeds, dev)
    pull_to = prev.to(dev) if prev is not None else None

    max_res = _truncated_res(G, batch, settings.truncate_factor)
    state, steps = optimise(
        G, space, batch, start, pull_to=pull_to, warm=warm, settings=settings, max_res=max_res
    )
    with torch.no_grad():
        images = render(G, space, state, autocast=settings.autocast)
        mse, _ = lowres_losses(images.clamp(0, 1), batch)  # what is delivered
    if max_res is not None:
        mse = _refine_misses(G, space, batch, state, steps, images, mse, pull_to, settings, dev)
    with torch.no_grad():
        rendered = images  # the state's own render: a warm start from it begins without one
        images = gray_like(images, batch).clamp(0, 1)
        ws = space.to_w(state.latents)
    return SearchResult(
        # the state stays on the device: the next frame starts from it without a round trip
        state=SearchState(state.latents.detach(), [n.detach() for n in state.noise], rendered.detach()),
        ws=ws.detach().cpu(),
        images=images.detach().float().cpu(),
        mse=mse.detach().float().cpu(),
        psnr=psnr_from_mse(mse.detach().float()).cpu(),
        met_bound=(mse <= settings.eps).cpu(),
        steps=steps.cpu(),
    )
