"""Batched PULSE search: find, for each face, latents whose image, downscaled, matches its target.

`search` is one pure function over a batch of faces (the projector.py shape): targets may have different
sizes, faces may be cold (random start, PULSE's schedule) or warm (start from the previous frame, smaller
budget, pulled towards it), gray or colour. Each face stops on its own; the batch shrinks as they do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.loss import downscale, geocross, pixel_losses, psnr_from_mse, pull, to_gray
from pipeline.search.optim import SphericalAdam, cold_schedule, warm_schedule
from pipeline.search.state import SearchResult, SearchState

log = logging.getLogger(__name__)

Targets = torch.Tensor | Sequence[torch.Tensor]  # [B, C, h, w] or B tensors [C, h, w]; C = 1 or 3, in [0, 1]


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


@dataclass
class _Batch:
    """Targets prepared once per call: grouped by size so each group is downscaled in one go."""

    sizes: list[tuple[int, int]]  # distinct target sizes
    size_id: torch.Tensor  # [B] long: index into sizes
    row: torch.Tensor  # [B] long: the face's row inside its size group
    groups: list[torch.Tensor]  # per size: [n, 3, h, w] targets (gray faces already as luma x 3)
    gray: torch.Tensor  # [B] bool

    @property
    def max_side(self) -> int:
        return max(max(s) for s in self.sizes)


def _prepare(targets: Targets, gray: torch.Tensor | bool, resolution: int, device: torch.device) -> _Batch:
    faces = list(targets.unbind(0)) if isinstance(targets, torch.Tensor) else list(targets)
    if not faces:
        raise SearchError("search: no targets")
    g = torch.as_tensor(gray, dtype=torch.bool).flatten()
    g = g.expand(len(faces)).clone() if g.numel() == 1 else g
    if g.numel() != len(faces):
        raise SearchError(f"search: gray has {g.numel()} entries for {len(faces)} targets")
    sizes: list[tuple[int, int]] = []
    members: list[list[torch.Tensor]] = []
    size_id, row = [], []
    for i, t in enumerate(faces):
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise SearchError(
                f"search: target {i} has shape {tuple(t.shape)}; expected [C, h, w] with C = 1 or 3"
            )
        h, w = int(t.shape[1]), int(t.shape[2])
        if h > resolution or w > resolution or min(h, w) < 1:
            raise SearchError(
                f"search: target {i} is {w}x{h} px; it must be at most the generator's {resolution} px"
            )
        if not bool(torch.isfinite(t).all()):
            raise SearchError(f"search: target {i} contains NaN or infinite values")
        t = t.to(device=device, dtype=torch.float32).clamp(0, 1)
        if t.shape[0] == 1:  # a one-channel target is gray footage whatever the flag says
            t, g[i] = t.expand(3, h, w), True
        if (h, w) not in sizes:
            sizes.append((h, w))
            members.append([])
        sid = sizes.index((h, w))
        size_id.append(sid)
        row.append(len(members[sid]))
        members[sid].append(t)
    g = g.to(device)
    groups = []
    for sid, ts in enumerate(members):
        stack = torch.stack(ts)  # [n, 3, h, w]
        in_group = torch.tensor(size_id, device=device) == sid
        groups.append(to_gray(stack, g[in_group]))
    return _Batch(sizes, torch.tensor(size_id, device=device), torch.tensor(row, device=device), groups, g)


def _truncated_res(G: torch.nn.Module, batch: _Batch, factor: float) -> int | None:
    """The smallest synthesis level at >= factor x the largest target side (None: use the full output)."""
    full = int(G.img_resolution)  # type: ignore[arg-type]
    if factor <= 0:
        return None
    res = 4
    while res < full and res < factor * batch.max_side:
        res *= 2
    return None if res >= full else res


def _autocast(device: torch.device, mode: str) -> contextlib.AbstractContextManager[None]:
    if mode == "none":
        return contextlib.nullcontext()
    if mode == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise SearchError(f"search.autocast: unknown mode {mode!r}; use 'none' or 'bfloat16'")


def render(
    G: torch.nn.Module,
    space: GaussianizedW,
    state: SearchState,
    *,
    max_res: int | None = None,
    autocast: str = "none",
) -> torch.Tensor:
    """Images [B, 3, r, r] in [0, 1] (not clamped) for a state; r = max_res or the full resolution."""
    device = state.latents.device
    n_noise = len(G.noise_shapes(max_res))  # type: ignore[operator]
    ws = space.to_w(state.latents)  # [B, num_ws, w_dim]
    with _autocast(device, autocast):
        img = G.synthesis(ws, noise=state.noise[:n_noise], max_res=max_res)  # type: ignore[operator]
    return (img.float() + 1) / 2


def _lowres_mse(img: torch.Tensor, idx: torch.Tensor, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-face (mse, mae) [n] of img [n, 3, r, r] (faces idx [n]) downscaled to each face's target."""
    img = to_gray(img, batch.gray[idx])
    mse = img.new_zeros(idx.shape[0])
    mae = img.new_zeros(idx.shape[0])
    sid = batch.size_id[idx]
    for s, size in enumerate(batch.sizes):
        sel = (sid == s).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        target = batch.groups[s][batch.row[idx[sel]]]  # [n_s, 3, h, w]
        m, a = pixel_losses(downscale(img[sel], size), target)
        mse = mse.index_put((sel,), m)
        mae = mae.index_put((sel,), a)
    return mse, mae


def _optimise(
    G: torch.nn.Module,
    space: GaussianizedW,
    batch: _Batch,
    start: SearchState,
    *,
    pull_to: SearchState | None,
    warm: torch.Tensor,  # [B] bool: warm schedule, warm budget/lr, pulled towards pull_to
    settings: SearchConfig,
    max_res: int | None,
) -> tuple[SearchState, torch.Tensor]:
    """Run the spherical optimiser until every face stops; returns (best state per face, steps [B])."""
    device = start.latents.device
    B = len(start)
    n_noise = len(G.noise_shapes(max_res))  # type: ignore[operator]  # maps the synthesis uses
    n_opt = min(settings.noise_layers, n_noise)  # a truncated synthesis may not reach them all
    params = [start.latents.detach().clone()] + [n.detach().clone() for n in start.noise[:n_opt]]
    fixed = start.noise[n_opt:n_noise]

    # coarse layers shared along a track: warm faces keep them exactly as they came
    mask = None
    if settings.share_coarse_layers > 0 and bool(warm.any()):
        mask = torch.ones(B, params[0].shape[1], 1, device=device)
        mask[warm, : settings.share_coarse_layers] = 0
    opt = SphericalAdam(params, update_masks=[mask] + [None] * n_opt)

    budget = torch.where(warm, settings.warm_steps, settings.steps).to(device)  # [B]
    base_lr = torch.where(warm, settings.warm_lr, settings.lr).to(device=device, dtype=torch.float32)
    pull_w = torch.where(warm, settings.pull_weight, 0.0).to(device=device, dtype=torch.float32)
    if pull_to is None:
        pull_w.zero_()

    if max_res is not None:
        residual = torch.zeros(B, int(G.img_channels), max_res, max_res, device=device)  # type: ignore[arg-type]
        residual_at = torch.full((B,), -1, dtype=torch.long, device=device)  # step of the last refresh
    best_total = torch.full((B,), float("inf"), device=device)
    best = SearchState(params[0].clone(), [n.clone() for n in start.noise])
    ref_mse = torch.full((B,), float("inf"), device=device)  # fit to beat by converge_tol
    stall = torch.zeros(B, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)

    while True:
        idx = (~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        leaves = [p[idx].detach().requires_grad_(True) for p in params]
        v = leaves[0]  # [n, num_ws, w_dim]
        noise = leaves[1:] + [f[idx] for f in fixed]
        state = SearchState(v, noise[:n_noise])
        img = render(G, space, state, max_res=max_res, autocast=settings.autocast)
        if max_res is not None:
            # what the finer layers add, seen at max_res: refreshed now and then with a full render
            stale = (opt.step_count[idx] - residual_at[idx] >= settings.truncate_refresh) | (
                residual_at[idx] < 0
            )
            if bool(stale.any()):
                fresh = idx[stale]
                with torch.no_grad():
                    full_state = SearchState(
                        params[0][fresh],
                        [p[fresh] for p in params[1:]] + [n[fresh] for n in start.noise[n_opt:]],
                    )
                    full = render(G, space, full_state, autocast=settings.autocast)
                    residual[fresh] = downscale(full, (max_res, max_res)) - img.detach()[stale]
                residual_at[fresh] = opt.step_count[fresh]
            img = img + residual[idx]
        mse, mae = _lowres_mse(img, idx, batch)
        total = settings.l2_weight * mse + settings.l1_weight * mae + settings.geocross_weight * geocross(v)
        if pull_to is not None:
            p_noise = [n[idx] for n in pull_to.noise[:n_opt]]
            total = total + pull_w[idx] * pull(v, pull_to.latents[idx], leaves[1:], p_noise)

        with torch.no_grad():
            t = total.detach()
            reached = mse.detach() <= settings.stop_eps
            better = (t < best_total[idx]) | reached
            take = idx[better]
            best_total[take] = t[better]
            best.latents[take] = v.detach()[better]
            for i in range(n_opt):
                best.noise[i][take] = leaves[1 + i].detach()[better]
            # progress is judged on the fit alone: GEOCROSS dominates the total and hides it
            m = mse.detach()
            progressed = m < ref_mse[idx] * (1 - settings.converge_tol)
            ref_mse[idx] = torch.where(progressed, m, ref_mse[idx])
            stall[idx] = torch.where(progressed, 0, stall[idx] + 1)
            stop = reached | (opt.step_count[idx] >= budget[idx]) | (stall[idx] >= settings.patience)
            done[idx[stop]] = True
        go = ~stop
        if not bool(go.any()):
            continue
        grads = torch.autograd.grad(total.sum(), leaves)
        run = idx[go]
        progress = opt.step_count[run].float() / budget[run].float()
        factor = torch.where(warm[run], warm_schedule(progress), cold_schedule(progress))
        opt.step(run, [g[go] for g in grads], base_lr[run] * factor)
    return best, opt.step_count.clone()


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
    batch = _prepare(targets, gray, G_res, dev)
    B = batch.size_id.shape[0]
    for name, st in (("init", init), ("prev", prev)):
        if st is not None and len(st) != B:
            raise SearchError(f"search: {name} has {len(st)} faces for {B} targets")
    warm = torch.zeros(B, dtype=torch.bool, device=dev)
    if prev is not None:
        warm = torch.ones_like(warm) if prev_mask is None else prev_mask.to(dev, torch.bool).clone()
    seeds = list(seeds) if seeds is not None else [settings.seed + i for i in range(B)]
    if len(seeds) != B:
        raise SearchError(f"search: {len(seeds)} seeds for {B} targets")

    if init is not None:
        start = init.to(dev)
    elif prev is None:
        start = random_state(G, seeds).to(dev)
    else:
        start = prev.to(dev)
        cold = (~warm).nonzero().squeeze(1)
        if cold.numel():  # random draws only for the cold faces (a full set of noise maps is large)
            fresh = random_state(G, [seeds[i] for i in cold.tolist()]).to(dev)
            start = SearchState(start.latents.clone(), [n.clone() for n in start.noise])
            start.latents[cold] = fresh.latents
            for i, n in enumerate(fresh.noise):
                start.noise[i][cold] = n
    pull_to = prev.to(dev) if prev is not None else None

    max_res = _truncated_res(G, batch, settings.truncate_factor)
    state, steps = _optimise(
        G, space, batch, start, pull_to=pull_to, warm=warm, settings=settings, max_res=max_res
    )
    all_idx = torch.arange(B, device=dev)
    with torch.no_grad():
        images = render(G, space, state, autocast=settings.autocast)
        mse, _ = _lowres_mse(images.clamp(0, 1), all_idx, batch)  # what is delivered
    if max_res is not None:
        miss = mse > settings.eps
        if bool(miss.any()):
            # the truncated image met the loss, the full one does not: finish those faces at full size
            log.debug("search: %d face(s) refined on the full synthesis", int(miss.sum()))
            sub = _subset(batch, miss)
            refined, more = _optimise(
                G,
                space,
                sub,
                state.select(miss),
                pull_to=pull_to.select(miss) if pull_to is not None else state.select(miss),
                warm=torch.ones(int(miss.sum()), dtype=torch.bool, device=dev),
                settings=settings,
                max_res=None,
            )
            state.latents[miss] = refined.latents
            for i, n in enumerate(refined.noise):
                state.noise[i][miss] = n
            steps[miss] += more
            with torch.no_grad():
                images[miss] = render(G, space, refined, autocast=settings.autocast)
                mse, _ = _lowres_mse(images.clamp(0, 1), all_idx, batch)  # what is delivered
    with torch.no_grad():
        images = to_gray(images, batch.gray).clamp(0, 1)
        ws = space.to_w(state.latents)
    return SearchResult(
        # the state stays on the device: the next frame starts from it without a round trip
        state=SearchState(state.latents.detach(), [n.detach() for n in state.noise]),
        ws=ws.detach().cpu(),
        images=images.detach().float().cpu(),
        mse=mse.detach().float().cpu(),
        psnr=psnr_from_mse(mse.detach().float()).cpu(),
        met_bound=(mse <= settings.eps).cpu(),
        steps=steps.cpu(),
    )


def _subset(batch: _Batch, mask: torch.Tensor) -> _Batch:
    """The same targets restricted to the faces where mask [B] is True (re-indexed from 0)."""
    idx = mask.nonzero().squeeze(1)
    sid = batch.size_id[idx]
    groups = [batch.groups[s][batch.row[idx[sid == s]]] for s in range(len(batch.sizes))]
    row = torch.zeros_like(sid)
    for s in range(len(batch.sizes)):
        sel = (sid == s).nonzero().squeeze(1)
        row[sel] = torch.arange(sel.numel(), device=sid.device)
    return _Batch(batch.sizes, sid, row, groups, batch.gray[idx])
