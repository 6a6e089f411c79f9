"""Batched PULSE search: find, for each face, latents whose image, downscaled, matches its target.

`search` is one pure function over a batch of faces (the projector.py shape): targets may have different
sizes, faces may be cold (random start, PULSE's schedule) or warm (start from the previous frame, smaller
budget, pulled towards it), gray or colour. Each face stops on its own; the batch keeps its shape (see
`pipeline.search.loop`), so a face's result does not depend on which other faces share its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

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


def _start_from_guide(start: SearchState, guide: torch.Tensor, rows: torch.Tensor) -> SearchState:
    """`start` with the latents of faces `rows` [B] (bool) replaced by `guide`'s (the spherical
    optimiser then keeps each latent vector at the guide's norm)."""
    if not bool(rows.any()):
        return start
    lat = start.latents.clone()
    lat[rows] = guide[rows].to(lat.dtype)
    return SearchState(lat, [n.clone() for n in start.noise])


@dataclass(frozen=True)
class _Guidance:
    """How a batch is guided: its start, which faces, the pull and the identity term."""

    start: SearchState
    guided: torch.Tensor  # [B] bool
    latents: torch.Tensor | None = None  # [B, num_ws, w_dim]
    weight: torch.Tensor | None = None  # [B] the pull's weight (0 where unguided)
    identity: tuple[torch.Tensor, torch.Tensor] | None = None  # ([B, 128] embeddings, [B] weights)


def _guidance(
    start: SearchState,
    warm: torch.Tensor,
    guide: torch.Tensor | None,
    guide_mask: torch.Tensor | None,
    embedding: torch.Tensor | None,
    settings: SearchConfig,
) -> _Guidance:
    """The batch's guidance (see `search`); cold guided faces start from the guide (guide_start)."""
    dev = start.latents.device
    guided = torch.zeros(len(start), dtype=torch.bool, device=dev)
    if guide is None:
        return _Guidance(start, guided)
    guide = guide.to(dev)
    guided = torch.ones_like(guided) if guide_mask is None else guide_mask.to(dev, torch.bool).clone()
    weight = torch.where(guided, settings.guide_weight, 0.0).to(dev)
    if settings.guide_start:
        start = _start_from_guide(start, guide, guided & ~warm)
    identity = None
    if embedding is not None and settings.identity_weight > 0:
        identity = (embedding.to(dev), torch.where(guided, settings.identity_weight, 0.0).to(dev))
    return _Guidance(start, guided, guide, weight, identity)


def _search_again(
    G: torch.nn.Module,
    space: GaussianizedW,
    batch: TargetBatch,
    state: SearchState,
    steps: torch.Tensor,
    images: torch.Tensor,
    rows: torch.Tensor,
    pull_to: SearchState,
    warm: bool,
    settings: SearchConfig,
) -> torch.Tensor:
    """Search the faces `rows` [B] (bool) again on the full synthesis without guidance, from their
    state (warm: pulled towards `pull_to` [rows], the warm budget; cold: PULSE's budget and schedule).
    state, steps and images are updated in place; returns the delivered mse [B]."""
    n = int(rows.sum())
    refined, more = optimise(
        G,
        space,
        subset(batch, rows),
        state.select(rows),
        pull_to=pull_to,
        warm=torch.full((n,), warm, dtype=torch.bool, device=rows.device),
        # a few faces of any count: compiling a graph for each count would cost more than it saves
        settings=replace(settings, compile="off"),
        max_res=None,
    )
    state.latents[rows] = refined.latents
    for i, x in enumerate(refined.noise):
        state.noise[i][rows] = x
    steps[rows] += more
    with torch.no_grad():
        images[rows] = render(G, space, refined, autocast=settings.autocast)
        mse, _ = lowres_losses(images.clamp(0, 1), batch)  # what is delivered
    return mse


def _start(
    G: torch.nn.Module,
    init: SearchState | None,
    prev: SearchState | None,
    warm: torch.Tensor,
    seeds: list[int],
    dev: torch.device,
) -> SearchState:
    """Where each face starts: init, else prev for warm faces and a seeded random draw for cold ones."""
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
    guide: torch.Tensor | None = None,
    guide_mask: torch.Tensor | None = None,
    guide_embedding: torch.Tensor | None = None,
) -> SearchResult:
    """Search a batch of faces; returns per face the latents, the full image and its measured consistency.

    targets: [B, C, h, w] or B tensors [C, h, w] in [0, 1] (sizes may differ; at most G's resolution).
    init: starting latents per face (None: a cold random start from `seeds`, default settings.seed + i).
    prev: the previous frame's state per face: those faces (all, or where prev_mask [B] is True) are warm
        starts: they start from prev (unless init is given), use the warm budget and learning rate and are
        pulled towards prev with settings.pull_weight.
    gray: bool or [B] bool: compare luminance and return a gray image for those faces.
    guide: [B, num_ws, w_dim] a reference person's latents per face (pipeline.search.guide), for the faces
        where guide_mask [B] is True (None: all): they are pulled towards it with settings.guide_weight,
        and cold ones start from it (settings.guide_start). A guided face that misses the bound is
        searched again without the pull: the guidance only chooses among consistent solutions.
    guide_embedding: [B, 128] the reference person's SFace embedding per face: with
        settings.identity_weight > 0, guided faces' loss adds that weight x (1 - the cosine of their
        image's SFace embedding to it) (pipeline.search.identity); dropped, like the pull, for a face
        searched again because it missed the bound.
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
    guidance = _guidance(start, warm, guide, guide_mask, guide_embedding, settings)
    start, guided = guidance.start, guidance.guided
    # SFace must see the whole face: with the identity term on, the fit runs on the full synthesis
    max_res = None if guidance.identity else _truncated_res(G, batch, settings.truncate_factor)
    state, steps = optimise(
        G, space, batch, start, pull_to=pull_to, warm=warm, settings=settings, max_res=max_res,
        guide=guidance.latents, guide_weight=guidance.weight, identity=guidance.identity,
    )  # fmt: skip
    with torch.no_grad():
        images = render(G, space, state, autocast=settings.autocast)
        mse, _ = lowres_losses(images.clamp(0, 1), batch)  # what is delivered
    miss = mse > settings.eps
    if max_res is not None and bool(miss.any()):
        # the truncated image met the loss, the full one does not: finish those faces at full size
        log.debug("search: %d face(s) refined on the full synthesis", int(miss.sum()))
        again = pull_to.select(miss) if pull_to is not None else state.select(miss)
        mse = _search_again(G, space, batch, state, steps, images, miss, again, True, settings)
    for warm_pass in (True, False):
        # a guided face that misses the bound: searched again without the guidance, warm (staying near
        # the guided face), then, if it still misses, cold (PULSE's budget) from there
        miss = guided & (mse > settings.eps)
        if bool(miss.any()):
            log.debug("search: %d guided face(s) searched again without the guidance", int(miss.sum()))
            again = state.select(miss)
            mse = _search_again(G, space, batch, state, steps, images, miss, again, warm_pass, settings)
    return _result(space, batch, state, images, mse, steps, settings)


def _result(
    space: GaussianizedW,
    batch: TargetBatch,
    state: SearchState,
    images: torch.Tensor,
    mse: torch.Tensor,
    steps: torch.Tensor,
    settings: SearchConfig,
) -> SearchResult:
    """What `search` returns: per face its state (on the device), w, image (gray where the target
    is), consistency and steps."""
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
