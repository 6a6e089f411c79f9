"""Long tracks split into chunks for parallel workers, without a jump at the chunk boundaries.

Plan: chunks of `chunk_len` frames, neighbours overlapping by `overlap` frames. Each chunk starts at an
anchor frame (its first frame). The anchors are solved first, in a chain: anchor 0 cold, anchor k+1
warm-started from anchor k with the cold step budget, so every chunk starts from the same identity. Then
the chunks run independently (in lockstep here; on separate workers in a cluster), each warm-starting
from its anchor. Where two chunks overlap, the frames have two answers; they are cross-faded (the later
chunk's weight rising linearly across the overlap), and each blended frame gets a short warm search
that starts from the blend and is pulled towards it, so it meets its target again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.search import search
from pipeline.search.state import SearchState
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


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # first frame (track position, inclusive); also the chunk's anchor frame
    end: int  # last frame + 1

    @property
    def anchor(self) -> int:
        return self.start


def plan_chunks(track_length: int, chunk_len: int, overlap: int) -> list[Chunk]:
    """Chunks covering [0, track_length), neighbours sharing `overlap` frames.

    chunk_len <= 0 or >= track_length gives one chunk. A tail too short to hold more than the overlap
    is merged into the chunk before it.
    """
    if track_length < 1:
        raise SearchError(f"plan_chunks: track length must be positive, got {track_length}")
    if chunk_len <= 0 or chunk_len >= track_length:
        return [Chunk(0, 0, track_length)]
    if not 0 <= overlap < chunk_len - 1:
        raise SearchError(
            f"plan_chunks: overlap {overlap} must be in [0, chunk_len - 1) = [0, {chunk_len - 1})"
        )
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = min(start + chunk_len, track_length)
        chunks.append(Chunk(len(chunks), start, end))
        if end == track_length:
            break
        start = end - overlap
        if track_length - start <= overlap + 1:  # the next chunk would add (almost) nothing new
            last = chunks.pop()
            chunks.append(Chunk(last.index, last.start, track_length))
            break
    return chunks


def boundary_transitions(chunks: Sequence[Chunk]) -> list[int]:
    """Transitions t (frame t -> t + 1) affected by a chunk boundary: the overlap and its two edges."""
    out: list[int] = []
    for a, b in itertools.pairwise(chunks):
        out.extend(range(b.start - 1, a.end))
    return out


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
) -> tuple[list[FaceRestoration], SearchState]:
    """Restore a track as anchors + overlapping chunks (settings.chunk_len, settings.chunk_overlap).

    Steps reported for an overlap frame add up both chunks' work and the blend's refinement: the cost
    of chunking is visible in the mean steps per frame.
    """
    n = len(crops)
    indices = list(frame_indices) if frame_indices is not None else list(range(n))
    chunks = plan_chunks(n, settings.chunk_len, settings.chunk_overlap)
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
        )
    no_smooth = replace(settings, smooth_sigma=0.0)  # smoothing, if asked, runs once over the whole track

    def target(t: int) -> torch.Tensor:
        return crop_to_tensor(crops[t], f"track {track_id} frame {indices[t]}")

    # 1. the anchor chain (sequential, cheap: one frame per chunk)
    anchors: list[FaceRestoration] = []
    anchor_states: list[SearchState] = []
    anchor_settings = replace(no_smooth, warm_steps=settings.steps)
    for c in chunks:
        if not anchor_states:
            res = search(
                G,
                [target(c.start)],
                settings=no_smooth,
                space=space,
                gray=gray,
                seeds=[track_seed(settings.seed, track_id)],
                device=device,
            )
        else:
            res = search(
                G,
                [target(c.start)],
                settings=anchor_settings,
                space=space,
                gray=gray,
                prev=anchor_states[-1],
                device=device,
            )
        anchors.append(to_restoration(track_id, indices[c.start], res, 0, int(res.steps[0])))
        anchor_states.append(res.state)

    # 2. the chunks, each warm-started from its anchor (independent: one work unit per worker)
    units = [
        TrackInput(
            track_id, crops[c.start + 1 : c.end], indices[c.start + 1 : c.end], gray, anchor_states[c.index]
        )
        for c in chunks
    ]
    outputs = restore_tracks_batched(
        G, units, settings=no_smooth, space=space, device=device, keep_states=True
    )
    per_chunk: list[list[FaceRestoration]] = []
    per_chunk_states: list[list[SearchState]] = []
    for c, o in zip(chunks, outputs, strict=True):
        per_chunk.append([anchors[c.index], *o.restorations])
        per_chunk_states.append([anchor_states[c.index], *(o.states or [])])

    # 3. assemble: each frame from the chunk that owns it, overlaps cross-faded and refined
    result: list[FaceRestoration | None] = [None] * n
    states: list[SearchState | None] = [None] * n
    for c in chunks:
        for t in range(c.start, c.end):
            if result[t] is None:
                result[t] = per_chunk[c.index][t - c.start]
                states[t] = per_chunk_states[c.index][t - c.start]
    blends: list[tuple[int, SearchState, int]] = []  # (frame, blended state, steps so far)
    for a, b in itertools.pairwise(chunks):
        width = a.end - b.start
        for j, t in enumerate(range(b.start, a.end)):
            w = (j + 1) / (width + 1)
            sa, sb = per_chunk_states[a.index][t - a.start], per_chunk_states[b.index][t - b.start]
            cost = per_chunk[a.index][t - a.start].steps + per_chunk[b.index][t - b.start].steps
            blends.append((t, SearchState.lerp(sa, sb, w), cost))
    step = max(1, settings.batch_size)
    for b0 in range(0, len(blends), step):
        part = blends[b0 : b0 + step]
        start = SearchState.cat([s for _, s, _ in part])
        res = search(
            G,
            [target(t) for t, _, _ in part],
            settings=no_smooth,
            space=space,
            init=start,
            prev=start,
            gray=gray,
            device=device,
        )
        for i, (t, _, cost) in enumerate(part):
            result[t] = to_restoration(track_id, indices[t], res, i, cost + int(res.steps[i]))
            states[t] = res.state.select([i])
    final = [r for r in result if r is not None]
    kept = [s for s in states if s is not None]
    assert len(final) == n and len(kept) == n
    if settings.smooth_sigma > 0:
        track = TrackInput(track_id, crops, indices, gray)
        final, kept = smooth_track(G, track, final, kept, settings=settings, space=space, device=device)
    return final, kept[-1]
