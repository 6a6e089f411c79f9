"""The search's optimiser loop over a fixed batch: shapes do not change from one iteration to the next.

A face that has stopped stays in the batch, masked: its parameters, moments, best iterate and step count
stay exactly as they were. So one iteration is the same computation every time: no data-dependent
indexing, no leaves re-made, and no host synchronisation but one "how many faces are still searching?"
check every `stop_check_every` iterations. That is what lets torch.compile (and CUDA graphs,
`search.compile = "reduce-overhead"`) capture the step.

Stopped faces still cost their share of every synthesis, so at a check where at most half of the batch
is still searching, the loop moves on with a batch of the next power of two that holds the searching
faces (`search.compact`): a call sees at most log2(B) + 1 shapes, each compiled once.

A face's trajectory depends only on its own target, start and settings: per-face losses are summed for
backward, so each face gets exactly its own gradient (other faces in the batch change only the float
rounding of the batched convolutions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache

import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.search.identity import identity_loss
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.loss import downscale, geocross, pull
from pipeline.search.optim import SphericalAdam, cold_schedule, warm_schedule
from pipeline.search.profiling import STEP_RANGE
from pipeline.search.state import SearchState
from pipeline.search.targets import TargetBatch, lowres_losses, take_targets

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def autocast(device: torch.device, mode: str) -> contextlib.AbstractContextManager[None]:
    if mode == "none":
        return contextlib.nullcontext()
    if mode == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise SearchError(f"search.autocast: unknown mode {mode!r}; use 'none' or 'bfloat16'")


def synthesise(
    G: torch.nn.Module,
    space: GaussianizedW,
    latents: torch.Tensor,
    noise: list[torch.Tensor],
    *,
    max_res: int | None,
    autocast_mode: str,
) -> torch.Tensor:
    """Images [B, 3, r, r] in [0, 1] (not clamped) of latents [B, num_ws, w_dim] and noise maps."""
    ws = space.to_w(latents)  # [B, num_ws, w_dim]
    with autocast(latents.device, autocast_mode):
        img = G.synthesis(ws, noise=noise, max_res=max_res)  # type: ignore[operator]
    return (img.float() + 1) / 2


def render(
    G: torch.nn.Module,
    space: GaussianizedW,
    state: SearchState,
    *,
    max_res: int | None = None,
    autocast: str = "none",
) -> torch.Tensor:
    """Images [B, 3, r, r] in [0, 1] (not clamped) for a state; r = max_res or the full resolution."""
    n_noise = len(G.noise_shapes(max_res))  # type: ignore[operator]
    return synthesise(G, space, state.latents, state.noise[:n_noise], max_res=max_res, autocast_mode=autocast)


def check_interval(settings: SearchConfig, device: torch.device) -> int:
    """Iterations between the host's stop checks: every one on a CPU (a check costs nothing there), else
    settings.stop_check_every (0 = 4 on an accelerator, where each check drains the queue of kernels)."""
    if settings.stop_check_every > 0:
        return settings.stop_check_every
    return 1 if device.type == "cpu" else 4


@dataclass
class _Progress:
    """Per-face bookkeeping of the loop, all [n] tensors on the device, updated in place."""

    best_total: torch.Tensor  # [n] float: the best loss seen
    best: SearchState  # the iterate that gave it (every noise map, optimised or not)
    ref_mse: torch.Tensor  # [n] float: the fit to beat by converge_tol
    stall: torch.Tensor  # [n] long: iterations without progress
    active: torch.Tensor  # [n] bool: still searching

    @classmethod
    def start(cls, start: SearchState) -> _Progress:
        B, device = len(start), start.latents.device
        return cls(
            best_total=torch.full((B,), float("inf"), device=device),
            best=SearchState(start.latents.detach().clone(), [n.detach().clone() for n in start.noise]),
            ref_mse=torch.full((B,), float("inf"), device=device),
            stall=torch.zeros(B, dtype=torch.long, device=device),
            active=torch.ones(B, dtype=torch.bool, device=device),
        )

    def take(self, keep: torch.Tensor) -> _Progress:
        return _Progress(
            self.best_total[keep],
            self.best.select(keep),
            self.ref_mse[keep],
            self.stall[keep],
            self.active[keep],
        )


@dataclass
class _Work:
    """The faces the loop is working on and everything it carries for them (first dimension = face)."""

    rows: torch.Tensor  # [n] long: each face's index in the caller's batch
    batch: TargetBatch  # their targets
    opt: SphericalAdam  # its params: latents [n, num_ws, w_dim], then the optimised noise [n, 1, H, W]
    fixed: list[torch.Tensor]  # noise maps the (truncated) synthesis uses but does not optimise
    rest: list[torch.Tensor]  # the noise maps beyond a truncated synthesis (for the full renders)
    warm: torch.Tensor  # [n] bool
    budget: torch.Tensor  # [n] long: step budget
    base_lr: torch.Tensor  # [n] float
    pull_w: torch.Tensor  # [n] float: weight of the pull towards pull_v / pull_noise
    pull_v: torch.Tensor | None  # [n, num_ws, w_dim] frame t-1's latents (None: no pull)
    pull_noise: list[torch.Tensor]  # frame t-1's optimised noise maps
    residual: torch.Tensor | None  # [n, C, r, r] what the finer layers add at a truncated level r
    prog: _Progress
    guide_w: torch.Tensor | None = None  # [n] float: weight of the pull towards guide_v (0: unguided)
    guide_v: torch.Tensor | None = None  # [n, num_ws, w_dim] a reference person's latents (None: none)
    ident_w: torch.Tensor | None = None  # [n] float: weight of the SFace identity term (0: off)
    ident_v: torch.Tensor | None = None  # [n, 128] the reference person's SFace embedding (None: no term)

    def take(self, keep: torch.Tensor) -> _Work:
        """The faces keep [n'] (long indices into this work), with all they carry."""
        parts: dict[str, object] = {}
        for f in fields(self):
            x = getattr(self, f.name)
            if f.name == "batch":
                parts[f.name] = take_targets(x, keep.tolist())
            elif isinstance(x, torch.Tensor):
                parts[f.name] = x[keep]
            elif isinstance(x, list):
                parts[f.name] = [t[keep] for t in x]
            elif x is not None:  # the optimiser and the progress
                parts[f.name] = x.take(keep)
            else:
                parts[f.name] = None
        return _Work(**parts)  # type: ignore[arg-type]


def _loss(
    G: torch.nn.Module,
    space: GaussianizedW,
    w: _Work,
    settings: SearchConfig,
    max_res: int | None,
    full_low: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total [n], mse [n]) at the current parameters: the fit, GEOCROSS, the pull to frame t-1 and,
    for guided faces, the pull to the reference latents and the SFace identity term (on the image the
    fit sees: `search` runs the full synthesis when the identity term is on).

    full_low: a fresh full render downscaled to max_res [n, C, r, r]; the residual becomes what it adds to
    this iteration's truncated image (so the fit is exactly that of the full render now).
    """
    ps = w.opt.params
    v = ps[0]
    img = synthesise(G, space, v, ps[1:] + w.fixed, max_res=max_res, autocast_mode=settings.autocast)
    if w.residual is not None:
        if full_low is not None:
            w.residual.copy_(full_low - img.detach())
        img = img + w.residual
    mse, mae = lowres_losses(img, w.batch)
    total = settings.l2_weight * mse + settings.l1_weight * mae + settings.geocross_weight * geocross(v)
    if w.pull_v is not None:
        total = total + w.pull_w * pull(v, w.pull_v, ps[1:], w.pull_noise)
    if w.guide_v is not None and w.guide_w is not None:
        total = total + w.guide_w * (v - w.guide_v).pow(2).mean((1, 2))
    if w.ident_v is not None and w.ident_w is not None:
        total = total + w.ident_w * identity_loss(img, w.ident_v)
    return total, mse


@torch.no_grad()
def _full_low(
    G: torch.nn.Module, space: GaussianizedW, w: _Work, settings: SearchConfig, max_res: int
) -> torch.Tensor:
    """The full render at the current parameters, downscaled to the truncated level [n, C, r, r]."""
    ps = w.opt.params
    full = synthesise(
        G, space, ps[0], ps[1:] + w.fixed + w.rest, max_res=None, autocast_mode=settings.autocast
    )
    return downscale(full, (max_res, max_res))


@torch.no_grad()
def _evaluate(w: _Work, total: torch.Tensor, mse: torch.Tensor, settings: SearchConfig) -> torch.Tensor:
    """Record the best iterate of the active faces, decide which stop; returns go [n] (take a step)."""
    prog, ps = w.prog, w.opt.params
    on = prog.active
    reached = mse <= settings.stop_eps
    better = on & ((total < prog.best_total) | reached)
    prog.best_total.copy_(torch.where(better, total, prog.best_total))
    for i, p in enumerate(ps):
        keep = prog.best.latents if i == 0 else prog.best.noise[i - 1]
        keep.copy_(torch.where(better.view(-1, *([1] * (p.ndim - 1))), p, keep))
    # progress is judged on the fit alone: GEOCROSS dominates the total and hides it
    progressed = mse < prog.ref_mse * (1 - settings.converge_tol)
    prog.ref_mse.copy_(torch.where(on & progressed, mse, prog.ref_mse))
    prog.stall.copy_(torch.where(on, torch.where(progressed, 0, prog.stall + 1), prog.stall))
    stop = reached | (w.opt.step_count >= w.budget) | (prog.stall >= settings.patience)
    go = on & ~stop
    prog.active.copy_(go)
    return go


@torch.no_grad()
def _step(w: _Work, grads: list[torch.Tensor], go: torch.Tensor) -> None:
    """One optimiser step of the faces where go [n] is True, on their schedules."""
    progress = w.opt.step_count.float() / w.budget.float()
    factor = torch.where(w.warm, warm_schedule(progress), cold_schedule(progress))
    w.opt.step(grads, w.base_lr * factor, active=go)


@cache
def _functions(
    mode: str,
) -> tuple[
    Callable[..., tuple[torch.Tensor, torch.Tensor]], Callable[..., torch.Tensor], Callable[..., None]
]:
    """The step's three parts (loss, evaluate, optimiser step), compiled with torch.compile in `mode`."""
    if mode not in COMPILE_MODES:
        raise SearchError(f"search.compile: unknown mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return _loss, _evaluate, _step
    # shapes are fixed between compactions: one graph per (batch, target sizes, level), no dynamic shapes
    return (
        torch.compile(_loss, mode=mode, dynamic=False),
        torch.compile(_evaluate, mode=mode, dynamic=False),
        torch.compile(_step, mode=mode, dynamic=False),
    )


def _bucket(n: int) -> int:
    """The power of two >= n."""
    return 1 << max(0, n - 1).bit_length()


def _start_work(
    G: torch.nn.Module,
    batch: TargetBatch,
    start: SearchState,
    pull_to: SearchState | None,
    warm: torch.Tensor,
    settings: SearchConfig,
    max_res: int | None,
    guide: torch.Tensor | None,
    guide_weight: torch.Tensor | None,
    identity: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> _Work:
    """The optimiser's state for every face of `batch`, from `start`: its parameters, budgets,
    learning rates, pulls and guidance (warm faces: the warm ones). identity: (reference embeddings
    [B, 128], the identity term's weights [B]), or None (no identity term)."""
    device = start.latents.device
    B = len(start)
    n_noise = len(G.noise_shapes(max_res))  # type: ignore[operator]  # maps the synthesis uses
    n_opt = min(settings.noise_layers, n_noise)  # a truncated synthesis may not reach them all
    # coarse layers shared along a track: warm faces keep them exactly as they came
    mask = None
    if settings.share_coarse_layers > 0 and bool(warm.any()):
        mask = torch.ones(B, start.latents.shape[1], 1, device=device)
        mask[warm, : settings.share_coarse_layers] = 0
    guide_w = None
    if guide is not None:
        guide_w = (guide_weight if guide_weight is not None else torch.ones(B)).to(device, torch.float32)
    params = [start.latents.detach().clone().requires_grad_(True)]
    params += [n.detach().clone().requires_grad_(True) for n in start.noise[:n_opt]]
    return _Work(
        rows=torch.arange(B, device=device),
        batch=batch,
        opt=SphericalAdam(params, update_masks=[mask] + [None] * n_opt),
        fixed=[n.detach() for n in start.noise[n_opt:n_noise]],
        rest=[n.detach() for n in start.noise[n_noise:]],
        warm=warm,
        budget=torch.where(warm, settings.warm_steps, settings.steps).to(device),
        base_lr=torch.where(warm, settings.warm_lr, settings.lr).to(device=device, dtype=torch.float32),
        pull_w=torch.where(warm, settings.pull_weight, 0.0).to(device=device, dtype=torch.float32),
        pull_v=pull_to.latents.detach() if pull_to is not None else None,
        pull_noise=[n.detach() for n in pull_to.noise[:n_opt]] if pull_to is not None else [],
        residual=(
            torch.zeros(B, int(G.img_channels), max_res, max_res, device=device)  # type: ignore[arg-type]
            if max_res is not None
            else None
        ),
        prog=_Progress.start(start),
        guide_w=guide_w,
        guide_v=guide.detach().to(device) if guide is not None else None,
        ident_w=identity[1].to(device, torch.float32) if identity is not None else None,
        ident_v=identity[0].detach().to(device, torch.float32) if identity is not None else None,
    )


def optimise(
    G: torch.nn.Module,
    space: GaussianizedW,
    batch: TargetBatch,
    start: SearchState,
    *,
    pull_to: SearchState | None,
    warm: torch.Tensor,  # [B] bool: warm schedule, warm budget/lr, pulled towards pull_to
    settings: SearchConfig,
    max_res: int | None,
    guide: torch.Tensor | None = None,  # [B, num_ws, w_dim] reference latents (pipeline.search.guide)
    guide_weight: torch.Tensor | None = None,  # [B] weight of the pull towards `guide` (0: unguided)
    identity: tuple[torch.Tensor, torch.Tensor] | None = None,  # ([B, 128] embeddings, [B] weights)
) -> tuple[SearchState, torch.Tensor]:
    """Run the spherical optimiser until every face stops; returns (best state per face, steps [B]).

    With max_res set, the loss sees a truncated synthesis at max_res px plus a residual: what the finer
    layers add, measured by a full render at the first iteration (none when start.image carries it: a
    warm start from the previous frame's result) and every settings.truncate_refresh iterations after it
    (0: only at the first).
    """
    device = start.latents.device
    B = len(start)
    any_warm, all_warm = bool(warm.any()), bool(warm.all())
    w = _start_work(G, batch, start, pull_to, warm, settings, max_res, guide, guide_weight, identity)
    best = SearchState(start.latents.detach().clone(), [n.detach().clone() for n in start.noise])
    steps = torch.zeros(B, dtype=torch.long, device=device)

    def write_back(w: _Work) -> None:
        best.latents[w.rows] = w.prog.best.latents
        for i, n in enumerate(w.prog.best.noise):
            best.noise[i][w.rows] = n
        steps[w.rows] = w.opt.step_count

    loss_fn, evaluate_fn, step_fn = _functions(settings.compile)
    every = check_interval(settings, device)
    n_iter = max(settings.warm_steps if any_warm else 0, settings.steps if not all_warm else 0) + 1
    for it in range(n_iter):  # every face has stopped at its budget's evaluation: a safe bound
        with torch.profiler.record_function(STEP_RANGE):
            full_low = None
            if w.residual is not None and (
                it == 0 or (settings.truncate_refresh > 0 and it % settings.truncate_refresh == 0)
            ):
                assert max_res is not None
                if it == 0 and start.image is not None:  # the start's render came with it
                    full_low = downscale(start.image, (max_res, max_res))
                else:
                    full_low = _full_low(G, space, w, settings, max_res)
            total, mse = loss_fn(G, space, w, settings, max_res, full_low)
            go = evaluate_fn(w, total.detach(), mse.detach(), settings)
            check = (it + 1) % every == 0 or it == n_iter - 1
            n = int(go.sum()) if check else -1  # the loop's one host sync, every `every` iterations
            if n == 0:
                break
            grads = torch.autograd.grad(total.sum(), w.opt.params)
            step_fn(w, list(grads), go)
            if check and settings.compact and _bucket(n) < len(w.rows):
                write_back(w)  # the faces left behind are final
                keep = torch.argsort((~go).to(torch.uint8), stable=True)[: _bucket(n)].sort().values
                w = w.take(keep)
    write_back(w)
    return best, steps
