"""Long tracks split into chunks for parallel workers, without a jump at the chunk boundaries.

Plan: consecutive chunks of `chunk_len` frames; each starts at an anchor frame (its first frame). The
anchors are solved first, in a chain: anchor 0 cold, anchor k+1 warm-started from anchor k with the cold
step budget, so every chunk starts from the same identity. Then the chunks run independently (in lockstep
here; on separate workers in a cluster), each warm-starting from its anchor. A chunk's path drifts away
from where the next anchor landed (the answer is ambiguous), so over its last `landing` frames each
frame's pull target moves from the previous frame towards the next chunk's anchor: the path arrives next
to the anchor while every frame still meets its own target, and the step into the next chunk is an
ordinary frame-to-frame step. (Cross-fading overlapping chunks instead was measured less steady: a blend
of two different answers wobbles.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from pipeline.config import SearchConfig
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.plan import Chunk, plan_chunks
from pipeline.search.search import search
from pipeline.search.state import Guide, SearchState
from pipeline.search.track import (
    TrackInput,
    crop_to_tensor,
    restore_track,
    restore_tracks_batched,
    smooth_track,
    to_restoration,
    track_seed,
)
from pipeline.types import FaceRestoration


def boundary_transitions(chunks: Sequence[Chunk], landing: int) -> list[int]:
    """Transitions t (frame t -> t + 1) shaped by a boundary: the landing and the step onto the anchor."""
    return [t for c in chunks[1:] for t in range(max(0, c.start - landing - 1), c.start)]


def restore_track_chunked(
    G: torch.nn.Module,
    crops: Sequence[np.ndarray],
    *,
    settings: SearchConfig,
    space: GaussianizedW,
    gray: bool = False,
    device: torch.device | str = "cpu",
    track_id: int = 0,
    frame_indices: Sequence[int] | None = None,
    guide: Guide | None = None,
) -> tuple[list[FaceRestoration], SearchState]:
    """Restore a track as anchors + chunks (settings.chunk_len, settings.chunk_landing).

    The anchors' steps count in the mean steps per frame, so the cost of chunking is visible. With
    `guide` (a reference person) every anchor and every chunk is guided as a whole track is.
    """
    n = len(crops)
    indices = list(frame_indices) if frame_indices is not None else list(range(n))
    chunks = plan_chunks(n, settings.chunk_len, settings.chunk_landing)
    if len(chunks) == 1:
        return restore_track(
            G,
            crops,
            settings=settings,
            space=space,
            gray=gray,
            device=device,
            track_id=track_id,
            frame_indices=indices,
            guide=guide.latents if guide is not None else None,
            guide_embedding=guide.embedding if guide is not None else None,
        )
    no_smooth = replace(settings, smooth_sigma=0.0)  # smoothing, if asked, runs once over the whole track

    # 1. the anchor chain (sequential on one worker, cheap: one frame per chunk)
    anchors, anchor_states = solve_anchors(
        G,
        [crops[c.start] for c in chunks],
        [indices[c.start] for c in chunks],
        settings=settings,
        space=space,
        gray=gray,
        device=device,
        track_id=track_id,
        guide=guide,
    )

    # 2. the chunks, each from its anchor, landing next to the following anchor (one work unit each)
    units = [
        chunk_input(
            track_id,
            crops,
            indices,
            c,
            anchor_states[c.index],
            anchor_states[c.index + 1] if c.index + 1 < len(chunks) else None,
            landing=settings.chunk_landing,
            gray=gray,
            guide=guide,
        )
        for c in chunks
    ]
    outputs = restore_tracks_batched(
        G, units, settings=no_smooth, space=space, device=device, keep_states=True
    )
    final: list[FaceRestoration] = []
    states: list[SearchState] = []
    for c, o in zip(chunks, outputs, strict=True):
        final += [anchors[c.index], *o.restorations]
        states += [anchor_states[c.index], *(o.states or [])]
    assert len(final) == n
    if settings.smooth_sigma > 0:
        track = TrackInput(track_id, crops, indices, gray)
        final, states = smooth_track(G, track, final, states, settings=settings, space=space, device=device)
    return final, states[-1].detach()


def solve_anchors(
    G: torch.nn.Module,
    anchor_crops: Sequence[np.ndarray],
    anchor_indices: Sequence[int],
    *,
    settings: SearchConfig,
    space: GaussianizedW,
    gray: bool = False,
    device: torch.device | str = "cpu",
    track_id: int = 0,
    guide: Guide | None = None,
) -> tuple[list[FaceRestoration], list[SearchState]]:
    """The anchor chain of a chunked track: anchor 0 cold, each next one warm-started from the one
    before with the cold step budget. Returns each anchor's restoration and state (on the CPU).
    With `guide` every anchor is guided (anchor 0 starts from the reference latents)."""
    no_smooth = replace(settings, smooth_sigma=0.0)
    anchor_settings = replace(no_smooth, warm_steps=settings.steps)  # a long jump: the full budget
    guided: dict[str, Any] = {}
    if guide is not None:
        embedding = guide.embedding.reshape(1, -1) if guide.embedding is not None else None
        guided = {"guide": guide.latents.reshape(1, *guide.latents.shape[-2:]), "guide_embedding": embedding}
    anchors: list[FaceRestoration] = []
    states: list[SearchState] = []
    for crop, frame in zip(anchor_crops, anchor_indices, strict=True):
        target = [crop_to_tensor(crop, f"track {track_id} frame {frame}")]
        if not states:
            seeds = [track_seed(settings.seed, track_id)]
            res = search(
                G, target, settings=no_smooth, space=space, gray=gray, seeds=seeds, device=device, **guided
            )
        else:
            res = search(
                G, target, settings=anchor_settings, space=space, gray=gray, prev=states[-1], device=device,
                **guided,
            )  # fmt: skip
        anchors.append(to_restoration(track_id, frame, res, 0, int(res.steps[0])))
        states.append(res.state.detach())
    return anchors, states


def chunk_input(
    track_id: int,
    crops: Sequence[np.ndarray],
    indices: Sequence[int],
    chunk: Chunk,
    anchor_state: SearchState,
    next_anchor_state: SearchState | None,
    *,
    landing: int,
    gray: bool = False,
    guide: Guide | None = None,
) -> TrackInput:
    """A chunk's work unit: its frames after its anchor (`crops`, `indices`: the whole track's), warm-
    started from the anchor and landing over its last `landing` frames on the next anchor (if any);
    guided towards `guide` (a reference person) when given."""
    return TrackInput(
        track_id,
        crops[chunk.start + 1 : chunk.end],
        indices[chunk.start + 1 : chunk.end],
        gray,
        prev_state=anchor_state,
        arrive_state=next_anchor_state,
        arrive_frames=landing,
        guide=guide.latents if guide is not None else None,
        guide_embedding=guide.embedding if guide is not None else None,
    )
