"""How a scan's tracks are divided into search units, and the search of one unit.

The plan (`pipeline.run.plan`) asks `search_plan`
how to divide the tracks and its search steps call `search_tracks`, `search_anchors` and
`search_chunk`. The division decides which faces share a search batch and so, in the last bits, the
result; it depends only on the tracks and the settings, so every executor and every resumed run
divides alike.

    search_plan(track_lengths, cfg)                       -> SearchPlan (units of whole tracks, chunks)
    search_tracks(G, space, crops, cfg, device)           -> list[FaceRestoration] (one unit)
    search_anchors(G, space, crops, chunks, cfg, device)  -> anchors of a chunked track (+ their states)
    search_chunk(G, space, crops, chunks, index, anchor, next_anchor, cfg, device) -> one chunk's faces
    join_chunked(anchors, parts)                          -> a chunked track's faces in frame order

A track longer than `search.chunk_len` (when set) is searched as runs of its own frames
(`pipeline.search.chunks`): one unit for its anchor chain, then one unit per chunk, which can run on
different workers at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import Config
from pipeline.errors import SearchError
from pipeline.faces import store
from pipeline.search.plan import plan_chunks
from pipeline.types import FaceCrop, FaceRestoration

if TYPE_CHECKING:
    from pipeline.prior.stylegan2 import Generator
    from pipeline.search.latent_space import GaussianizedW
    from pipeline.search.plan import Chunk
    from pipeline.search.state import Guide, SearchState

log = logging.getLogger(__name__)


def search_units(
    track_ids: Sequence[int], batch_size: int, groups: Mapping[int, int] | None = None
) -> list[tuple[int, ...]]:
    """Tracks searched together (in lockstep batches) as one unit: consecutive ids, `batch_size` at a time.

    Give it every track of the scan, never only those still to do: the grouping then depends only on
    the tracks and the batch size, so a rerun batches every face exactly as an uninterrupted run did,
    and both executors batch alike. This matters: the search's float results depend (in the last bits,
    then visibly through the warm starts) on which faces share a batch.

    With `groups` (track id -> group, e.g. its person; a track not in it is a group of its own) the
    tracks of one group are always in one unit: groups are packed whole, in order of their smallest
    track id, `batch_size` tracks to a unit at most, except that a larger group is a unit alone.
    """
    ids = sorted(track_ids)
    size = max(1, batch_size)
    if groups is None:
        return [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]
    members: dict[tuple[int, int], list[int]] = defaultdict(list)
    for tid in ids:
        members[(0, groups[tid]) if tid in groups else (1, tid)].append(tid)
    units: list[tuple[int, ...]] = []
    current: list[int] = []
    for group in sorted(members.values(), key=lambda m: m[0]):
        if current and len(current) + len(group) > size:
            units.append(tuple(current))
            current = []
        current += group
    if current:
        units.append(tuple(current))
    return units


@dataclass(frozen=True)
class SearchPlan:
    """How a scan's tracks are searched: whole tracks in batched units, long tracks in chunks."""

    units: list[tuple[int, ...]]  # whole tracks searched together (`search_units` of the short tracks)
    chunked: dict[int, list[Chunk]]  # track id -> its chunks, at least two


def search_plan(
    track_lengths: Mapping[int, int], cfg: Config, groups: Mapping[int, int] | None = None
) -> SearchPlan:
    """Which tracks are searched whole (batched as `search_units` batches them, a group's tracks
    in one unit when `groups` is given) and which in chunks.

    With search.chunk_len 0 (off), or for tracks no longer than chunk_len, nothing changes: every track
    is searched whole. Smoothing over time (search.smooth_sigma) needs every frame's state of a track
    at once, so with it tracks are searched whole too.
    """

    s = cfg.search
    chunked: dict[int, list[Chunk]] = {}
    if s.chunk_len > 0:
        long = [tid for tid, n in sorted(track_lengths.items()) if n > s.chunk_len]
        if long and s.smooth_sigma > 0:
            log.warning(
                "search.chunk_len is set but search.smooth_sigma > 0 smooths whole tracks: %d long "
                "track(s) are searched whole, on one worker each",
                len(long),
            )
        elif long:
            for tid in long:
                chunks = plan_chunks(track_lengths[tid], s.chunk_len, s.chunk_landing)
                if len(chunks) > 1:
                    chunked[tid] = chunks
    whole = [tid for tid in track_lengths if tid not in chunked]
    return SearchPlan(search_units(whole, s.batch_size, groups), chunked)


def search_target(crop: np.ndarray, resolution: int) -> np.ndarray:
    """The search target: the native crop, or, for faces larger than the generator, the crop reduced
    to the generator's resolution (the prior cannot add detail the footage already has)."""
    import cv2

    if crop.shape[0] <= resolution:
        return crop
    return np.asarray(cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA))


def search_tracks(
    G: Generator,  # already on `device`
    space: GaussianizedW,  # fitted for G
    crops: Sequence[FaceCrop],
    cfg: Config,
    device: str = "cpu",
    guides: Mapping[int, Guide] | None = None,
) -> list[FaceRestoration]:
    """Warm-started latent search over whole tracks (several tracks advance in one batch); a track in
    `guides` is steered towards its reference person (a pipeline.search.state.Guide)."""
    from pipeline.search.track import TrackInput, restore_tracks_batched

    resolution = int(G.cfg.resolution)
    larger = sum(c.image.shape[0] > resolution for c in crops)
    if larger:
        log.warning(
            "%d of %d faces are larger in the footage than the generator's %d px: they are searched "
            "at %d px and come back with less detail than the footage has (use a higher-resolution prior)",
            larger,
            len(crops),
            resolution,
            resolution,
        )
    by_track: dict[int, list[FaceCrop]] = defaultdict(list)
    for c in crops:
        by_track[c.track_id].append(c)
    inputs = []
    for tid, cs in sorted(by_track.items()):
        cs.sort(key=lambda c: c.frame_index)
        images = [search_target(c.image, resolution) for c in cs]
        g = (guides or {}).get(tid)
        inputs.append(
            TrackInput(
                tid,
                images,
                [c.frame_index for c in cs],
                cs[0].gray,
                guide=g.latents if g is not None else None,
                guide_embedding=g.embedding if g is not None else None,
            )
        )
    results = restore_tracks_batched(G, inputs, settings=cfg.search, space=space, device=device)
    # Exactly what the work directory keeps (faces in float16): a run that pastes the faces it holds
    # and a resumed one that pastes them from the store compose the same values.
    return as_stored([face for result in results for face in result.restorations])


def _track_targets(
    crops: Sequence[FaceCrop], chunks: Sequence[Chunk], resolution: int, span: tuple[int, int] | None = None
) -> tuple[list[np.ndarray], list[int]]:
    """A chunked track's search targets and frame indices, checked against its chunk plan. With
    `span` only the targets of track positions [span) are made; the others are left as they are."""

    cs = sorted(crops, key=lambda c: c.frame_index)
    tracks = {int(c.track_id) for c in cs}
    if len(tracks) != 1 or len(cs) != chunks[-1].end:
        raise SearchError(
            f"a chunked search needs the {chunks[-1].end} crops of one track; got {len(cs)} of track(s) "
            f"{sorted(tracks)}"
        )
    a, b = span if span is not None else (0, len(cs))
    images = [search_target(c.image, resolution) if a <= i < b else c.image for i, c in enumerate(cs)]
    return images, [c.frame_index for c in cs]


def search_anchors(
    G: Generator,
    space: GaussianizedW,
    crops: Sequence[FaceCrop],
    chunks: Sequence[Chunk],
    cfg: Config,
    device: str = "cpu",
    guide: Guide | None = None,
) -> tuple[list[FaceRestoration], list[SearchState]]:
    """The anchor chain of one chunked track (`crops`: the whole track's): each chunk's first frame,
    restored in order (guided towards `guide`, a reference person, when given); returns the anchors
    (as stored) and their SearchStates (on the CPU)."""
    from pipeline.search.chunks import solve_anchors

    resolution = int(G.cfg.resolution)
    native, indices = _track_targets(crops, chunks, resolution, (0, 0))  # only the anchors are searched
    anchors, states = solve_anchors(
        G,
        [search_target(native[c.start], resolution) for c in chunks],
        [indices[c.start] for c in chunks],
        settings=cfg.search,
        space=space,
        gray=bool(crops[0].gray),
        device=device,
        track_id=int(crops[0].track_id),
        guide=guide,
    )
    return as_stored(anchors), states


def search_chunk(
    G: Generator,
    space: GaussianizedW,
    crops: Sequence[FaceCrop],
    chunks: Sequence[Chunk],  # the track's plan
    index: int,  # the chunk to search
    anchor_state: SearchState,  # the chunk's anchor's
    next_anchor_state: SearchState | None,  # the next chunk's anchor's, None for the last chunk
    cfg: Config,
    device: str = "cpu",
    guide: Guide | None = None,
) -> list[FaceRestoration]:
    """One chunk of a chunked track (`crops`: the whole track's): its frames after its anchor, warm-
    started from the anchor and landing on the next one, as `restore_track_chunked` runs them
    (guided towards `guide`, a reference person, when given)."""
    from pipeline.search.chunks import chunk_input
    from pipeline.search.track import restore_tracks_batched

    chunk = chunks[index]
    images, indices = _track_targets(crops, chunks, int(G.cfg.resolution), (chunk.start, chunk.end))
    unit = chunk_input(
        int(crops[0].track_id),
        images,
        indices,
        chunk,
        anchor_state,
        next_anchor_state,
        landing=cfg.search.chunk_landing,
        gray=bool(crops[0].gray),
        guide=guide,
    )
    settings = replace(cfg.search, smooth_sigma=0.0)
    (result,) = restore_tracks_batched(G, [unit], settings=settings, space=space, device=device)
    return as_stored(result.restorations)


def join_chunked(
    anchors: Sequence[FaceRestoration], parts: Sequence[Sequence[FaceRestoration]]
) -> list[FaceRestoration]:
    """A chunked track's faces in frame order: each chunk's anchor, then the chunk's other frames."""
    return [face for anchor, part in zip(anchors, parts, strict=True) for face in (anchor, *part)]


def states_to_arrays(states: Sequence[SearchState]) -> dict[str, np.ndarray]:
    """One-face SearchStates (anchors) as float32 arrays, exactly: latents and every noise map."""
    if not states:
        return {}
    out = {"state_latents": np.concatenate([s.latents.detach().cpu().numpy() for s in states])}
    for i in range(len(states[0].noise)):
        out[f"state_noise_{i:03d}"] = np.concatenate([s.noise[i].detach().cpu().numpy() for s in states])
    return out


def states_from_arrays(a: Mapping[str, np.ndarray]) -> list[SearchState]:
    """The SearchStates `states_to_arrays` stored, one per face."""
    import torch

    from pipeline.search.state import SearchState

    if "state_latents" not in a:
        return []
    names = sorted(k for k in a if k.startswith("state_noise_"))
    lat = torch.from_numpy(np.array(a["state_latents"]))
    noise = [torch.from_numpy(np.array(a[k])) for k in names]
    return [SearchState(lat[i : i + 1], [n[i : i + 1] for n in noise]) for i in range(lat.shape[0])]


def as_stored(faces: Sequence[FaceRestoration]) -> list[FaceRestoration]:
    """The restorations as `store.restorations_from_arrays` gives them back after they are stored."""

    return store.restorations_from_arrays(store.restorations_to_arrays(faces))
