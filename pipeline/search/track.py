"""Restoring whole tracks: frame t warm-starts from frame t-1, several tracks advance in lockstep.

`restore_tracks_batched` is what a search worker runs on the work units it holds: frame t of every
track goes into one batched `search` call (targets of different sizes are fine), so a GPU sees a full
batch even though each track must run in order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.search import random_state, search
from pipeline.search.state import SearchResult, SearchState
from pipeline.types import FaceRestoration

log = logging.getLogger(__name__)


@dataclass
class TrackInput:
    """One run of consecutive frames of one track, as a search worker receives it."""

    track_id: int
    crops: Sequence[np.ndarray]  # per frame [S, S, 3] (or [S, S]) float in [0, 1]; S may vary per frame
    frame_indices: Sequence[int]  # source frame index of each crop
    gray: bool = False  # black-and-white footage: compare luminance, return gray faces
    prev_state: SearchState | None = None  # one face: the state of the frame before crops[0] (warm start)
    arrive_state: SearchState | None = None  # one face: the state of the frame after the last crop, if known
    arrive_frames: int = 0  # the last frames are pulled ever more towards arrive_state (a chunk's landing)
    guide: torch.Tensor | None = (
        None  # [1, num_ws, w_dim] its reference person's latents (pipeline.search.guide)
    )
    guide_embedding: torch.Tensor | None = None  # [128] their SFace embedding (search.identity_weight)


def track_seed(seed: int, track_id: int) -> int:
    """The cold-start seed of a track: depends on the settings' seed and the track only."""
    return (seed * 1_000_003 + track_id * 7_919 + 17) % (2**62)


def crop_to_tensor(crop: np.ndarray, where: str) -> torch.Tensor:
    """[S, S, 3] / [S, S, 1] / [S, S] float in [0, 1] -> [C, S, S] float32; bad input: SearchError."""
    a = np.asarray(crop)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise SearchError(f"{where}: crop has shape {a.shape}; expected [S, S, 3] or [S, S]")
    if not np.issubdtype(a.dtype, np.floating):
        raise SearchError(f"{where}: crop has dtype {a.dtype}; expected float in [0, 1]")
    if not np.isfinite(a).all():
        raise SearchError(f"{where}: crop contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))


def to_restoration(track_id: int, frame_index: int, res: SearchResult, i: int, steps: int) -> FaceRestoration:
    return FaceRestoration(
        track_id=track_id,
        frame_index=int(frame_index),
        latents=res.ws[i].numpy().astype(np.float32),
        image=res.images[i].permute(1, 2, 0).numpy().astype(np.float32),
        psnr=float(res.psnr[i]),
        met_bound=bool(res.met_bound[i]),
        steps=steps,
    )


@dataclass
class TrackOutput:
    """What restoring one TrackInput gives back."""

    restorations: list[FaceRestoration]  # one per crop, in order
    state: SearchState | None  # the last frame's state (warm-starts whatever follows); None if no crops
    states: list[SearchState] | None = None  # every frame's state, when asked for (keep_states=True)


def _share_unchanged(state: SearchState, ref: SearchState | None) -> SearchState:
    """Point noise maps equal to ref's at ref's tensors: a warm track keeps its fixed noise, so a kept
    history costs a few latents per frame instead of a full set of noise maps (~11 MB at 1024 px)."""
    if ref is None:
        return state
    noise = [r if torch.equal(n, r) else n for n, r in zip(state.noise, ref.noise, strict=True)]
    return SearchState(state.latents, noise)


def restore_tracks_batched(
    G: torch.nn.Module,
    tracks: Sequence[TrackInput],
    *,
    settings: SearchConfig,
    space: GaussianizedW,
    device: torch.device | str = "cpu",
    keep_states: bool = False,
) -> list[TrackOutput]:
    """Restore several tracks at once, advancing them in lockstep.

    Frame 0 of a track is a cold search (or a warm start from `prev_state`); every later frame warm-starts
    from the frame before. Frame t of every track goes into one search call (up to settings.batch_size
    faces per call; targets of different sizes are fine). With settings.smooth_sigma > 0 the latents are
    smoothed over time afterwards (see smooth_track).
    """
    for tr in tracks:
        if len(tr.crops) != len(tr.frame_indices):
            raise SearchError(
                f"track {tr.track_id}: {len(tr.crops)} crops but {len(tr.frame_indices)} frame indices"
            )
        if tr.prev_state is not None and len(tr.prev_state) != 1:
            raise SearchError(f"track {tr.track_id}: prev_state must hold exactly one face")
    prev: list[SearchState | None] = [tr.prev_state for tr in tracks]
    out: list[list[FaceRestoration]] = [[] for _ in tracks]
    keep = keep_states or settings.smooth_sigma > 0
    history: list[list[SearchState]] = [[] for _ in tracks]
    length = max((len(tr.crops) for tr in tracks), default=0)
    step = max(1, settings.batch_size)
    for t in range(length):
        live = [k for k, tr in enumerate(tracks) if t < len(tr.crops)]
        for b0 in range(0, len(live), step):
            part = live[b0 : b0 + step]
            targets = [
                crop_to_tensor(
                    tracks[k].crops[t], f"track {tracks[k].track_id} frame {tracks[k].frame_indices[t]}"
                )
                for k in part
            ]
            res = _search_step(
                G, targets, [prev[k] for k in part], [tracks[k] for k in part], t, settings, space, device
            )
            for i, k in enumerate(part):
                st = res.state.select([i])  # with its render: the next frame starts without one
                if keep:  # the history keeps no renders
                    history[k].append(_share_unchanged(st, history[k][-1] if history[k] else None))
                prev[k] = st
                out[k].append(
                    to_restoration(tracks[k].track_id, tracks[k].frame_indices[t], res, i, int(res.steps[i]))
                )
    if settings.smooth_sigma > 0:
        for k, tr in enumerate(tracks):
            if out[k]:
                out[k], history[k] = smooth_track(
                    G, tr, out[k], history[k], settings=settings, space=space, device=device
                )
                prev[k] = history[k][-1]
    # states leave on the CPU: cheap to keep and to pickle between workers
    return [
        TrackOutput(
            out[k],
            prev[k].detach() if prev[k] is not None else None,  # type: ignore[union-attr]
            [s.detach() for s in history[k]] if keep_states else None,
        )
        for k in range(len(tracks))
    ]


def _arrive_weight(track: TrackInput, t: int) -> float:
    """How far frame t's pull target moves from frame t-1 towards the track's arrive_state (0..1)."""
    n = len(track.crops)
    first = n - track.arrive_frames
    if track.arrive_state is None or track.arrive_frames <= 0 or t < first:
        return 0.0
    return (t - first + 1) / (track.arrive_frames + 1)


def _search_step(
    G: torch.nn.Module,
    targets: list[torch.Tensor],
    prev: list[SearchState | None],
    tracks: list[TrackInput],
    t: int,
    settings: SearchConfig,
    space: GaussianizedW,
    device: torch.device | str,
) -> SearchResult:
    """One batched search (frame position t of each track) over faces that may be cold or warm.

    A warm face starts from its previous frame and is pulled towards it, or, in the last frames of a
    track that must land on a known state (a chunk before the next chunk's anchor), towards a blend of
    its previous frame and that state whose weight grows frame by frame.
    """
    warm = torch.tensor([p is not None for p in prev])
    seeds = [track_seed(settings.seed, tr.track_id) for tr in tracks]
    guide, guide_mask, embedding = _guides(tracks, G)
    init, pulls = _warm_starts(G, tracks, prev, seeds, t) if bool(warm.any()) else (None, None)
    return search(
        G,
        targets,
        settings=settings,
        space=space,
        init=init,
        prev=pulls,
        prev_mask=warm if init is not None else None,
        gray=torch.tensor([tr.gray for tr in tracks]),
        seeds=seeds,
        device=device,
        guide=guide,
        guide_mask=guide_mask,
        guide_embedding=embedding,
    )


def _warm_starts(
    G: torch.nn.Module,
    tracks: Sequence[TrackInput],
    prev: Sequence[SearchState | None],
    seeds: Sequence[int],
    t: int,
) -> tuple[SearchState, SearchState]:
    """The start of each face (its previous frame, or a fresh seeded state for a cold one) and the
    state it is pulled towards (its previous frame, blended towards the arrival state near the end)."""
    cold_rows = [i for i, p in enumerate(prev) if p is None]
    fresh = random_state(G, [seeds[i] for i in cold_rows]) if cold_rows else None
    starts, pulls = [], []
    for i, (p, tr) in enumerate(zip(prev, tracks, strict=True)):
        if p is None:
            assert fresh is not None
            own = fresh.select([cold_rows.index(i)])
            starts.append(own)
            pulls.append(own)  # unused: prev_mask keeps this face cold
            continue
        starts.append(p)
        w = _arrive_weight(tr, t)
        pulls.append(SearchState.lerp(p, tr.arrive_state, w) if w > 0 and tr.arrive_state is not None else p)
    return SearchState.cat(starts), SearchState.cat(pulls)


def _guides(
    tracks: Sequence[TrackInput], G: torch.nn.Module
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The tracks' reference latents [B, num_ws, w_dim] (zeros where a track has none), which tracks
    have one [B], and their SFace embeddings [B, 128] (None unless every guided track has one;
    zeros for the others). (None, None, None): no track of the batch is guided."""
    if all(tr.guide is None for tr in tracks):
        return None, None, None
    shape = (int(G.num_ws), int(G.w_dim))  # type: ignore[arg-type]
    rows = [tr.guide.reshape(shape).float() if tr.guide is not None else torch.zeros(shape) for tr in tracks]
    mask = torch.tensor([tr.guide is not None for tr in tracks])
    embedding = None
    if all(tr.guide_embedding is not None for tr in tracks if tr.guide is not None):
        embedding = torch.stack(
            [
                tr.guide_embedding.reshape(-1).float()
                if tr.guide is not None and tr.guide_embedding is not None
                else torch.zeros(128)
                for tr in tracks
            ]
        )
    return torch.stack(rows), mask, embedding


def restore_track(
    G: torch.nn.Module,
    crops: Sequence[np.ndarray],
    *,
    settings: SearchConfig,
    space: GaussianizedW,
    gray: bool = False,
    device: torch.device | str = "cpu",
    track_id: int = 0,
    frame_indices: Sequence[int] | None = None,
    prev_state: SearchState | None = None,
    guide: torch.Tensor | None = None,
    guide_embedding: torch.Tensor | None = None,
) -> tuple[list[FaceRestoration], SearchState]:
    """Restore one track frame by frame with warm starts; returns the restorations and the last state.
    guide: [1, num_ws, w_dim] a reference person's latents steering the search (pipeline.search.guide);
    guide_embedding: [128] their SFace embedding (the identity term, search.identity_weight)."""
    indices = list(frame_indices) if frame_indices is not None else list(range(len(crops)))
    track = TrackInput(
        track_id, crops, indices, gray, prev_state, guide=guide, guide_embedding=guide_embedding
    )
    result = restore_tracks_batched(G, [track], settings=settings, space=space, device=device)[0]
    if result.state is None:
        raise SearchError(f"track {track_id}: no crops to restore")
    return result.restorations, result.state


def gaussian_weights(length: int, sigma: float) -> torch.Tensor:
    """[length, length] row-normalised Gaussian smoothing matrix (rows near the ends renormalised)."""
    t = torch.arange(length, dtype=torch.float32)
    k = torch.exp(-0.5 * ((t[:, None] - t[None, :]) / sigma) ** 2)
    return k / k.sum(1, keepdim=True)


def smooth_track(
    G: torch.nn.Module,
    track: TrackInput,
    restorations: list[FaceRestoration],
    states: list[SearchState],
    *,
    settings: SearchConfig,
    space: GaussianizedW,
    device: torch.device | str = "cpu",
) -> tuple[list[FaceRestoration], list[SearchState]]:
    """Smooth a track's latents and optimised noise over time, then make every frame meet its target again.

    Each frame's smoothed state is its new start and pull target for a warm search: a frame that still
    meets the tight stop bound costs no step; one that drifted off its target is pulled back with the warm
    budget. Steps of that pass are added to each frame's count.
    """
    n = len(states)
    states = [s.to(device) for s in states]  # a chunked track's states come from several places
    n_opt = min(settings.noise_layers, len(states[0].noise))
    K = gaussian_weights(n, settings.smooth_sigma).to(states[0].latents.device)  # [n, n]
    # only what changes from frame to frame is smoothed: latents and the optimised noise maps
    lat = torch.einsum("ts,s...->t...", K, torch.cat([s.latents for s in states]))  # [n, num_ws, w_dim]
    opt_noise = [
        torch.einsum("ts,s...->t...", K, torch.cat([s.noise[i] for s in states])) for i in range(n_opt)
    ]
    out: list[FaceRestoration] = []
    new_states: list[SearchState] = []
    no_share = replace(settings, share_coarse_layers=0)
    for b0 in range(0, n, max(1, settings.batch_size)):
        sel = list(range(b0, min(n, b0 + settings.batch_size)))
        targets = [
            crop_to_tensor(track.crops[t], f"track {track.track_id} frame {track.frame_indices[t]}")
            for t in sel
        ]
        own = SearchState.cat([states[t] for t in sel])
        start = SearchState(lat[sel], [x[sel] for x in opt_noise] + own.noise[n_opt:])
        start = start.with_radii_of(own)  # an average over frames lies inside the spheres: put it back
        res = search(
            G, targets, settings=no_share, space=space, init=start, prev=start, gray=track.gray, device=device
        )
        for i, t in enumerate(sel):
            steps = restorations[t].steps + int(res.steps[i])
            out.append(to_restoration(track.track_id, track.frame_indices[t], res, i, steps))
            new_states.append(res.state.select([i]))
    return out, new_states
