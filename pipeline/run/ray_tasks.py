"""What Ray runs on the workers for the Ray executor: tasks and the search actor's functions.

Module-level functions, so Ray ships them by reference (the package is installed on every node).
Each reads its inputs by path (the source video, artifacts in the work directory), writes its result
into the work directory, and returns something small. PipelineErrors (a damaged input, a bad
checkpoint) reach the driver as themselves (`portable_errors`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.run import progress as P
from pipeline.run.actors import portable_errors
from pipeline.run.report import face_record


@portable_errors
def scan_task(video: str, config: Config, out: str, reporter: P.ProgressReporter | None) -> dict[str, int]:
    """Scan the whole video (as the in-process executor does) and store the result; returns counts."""
    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.workdir import save_arrays

    scanned = stages.scan(Path(video), config)
    save_arrays(out, **store.scan_to_arrays(scanned))
    if reporter is not None:
        reporter.add(P.FRAMES_SCANNED, scanned.end - scanned.start)
        reporter.flush(wait=True)
    return {"tracks": len(scanned.tracks), "frames": scanned.end - scanned.start}


@portable_errors
def crops_task(video: str, scan_path: str, track_id: int, config: Config, out: str) -> int:
    """The aligned crops of one track, stored as npz; returns how many."""
    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.workdir import load_arrays, save_arrays

    scanned = store.scan_from_arrays(load_arrays(scan_path))
    tracks = [t for t in scanned.tracks if t.track_id == track_id]
    crops = stages.make_crops(Path(video), tracks, scanned.gray, config)
    save_arrays(out, **store.crops_to_arrays(crops))
    return len(crops)


@dataclass
class SearchModel:
    """What a search actor holds: the generator on its device and the fitted latent space."""

    G: Any
    space: Any
    device: str
    description: str
    random: bool


@portable_errors
def load_search_model(model: str, device: str, dtype: str, gaussian_samples: int) -> SearchModel:
    """Runs once per search actor, on the actor's node (its GPU when it was given one)."""
    from pipeline.run.local import load_prior, resolve_device
    from pipeline.search.latent_space import GaussianizedW

    device = resolve_device(device)
    prior = load_prior(model, device, dtype)
    space = GaussianizedW.fit(prior.G, n=gaussian_samples, device=device)
    return SearchModel(prior.G, space, device, prior.description, prior.random)


@portable_errors
def describe_model(model: SearchModel) -> dict[str, Any]:
    return {"description": model.description, "random": model.random, "device": model.device}


@portable_errors
def search_unit(
    model: SearchModel,
    scan_path: str,
    crops_paths: Sequence[str],
    config: Config,
    outs: Sequence[str],
    reporter: P.ProgressReporter | None,
) -> dict[str, Any]:
    """Search one unit (whole tracks, advanced in lockstep batches), measure each track's identity
    from the unit's crops and restorations, and store both per track.

    Returns only small things: each face's report row and each track's identity figures.
    """
    import ray

    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.report import identity_to_arrays, measure_identity
    from pipeline.run.workdir import load_arrays, save_arrays

    per_track = [store.crops_from_arrays(load_arrays(path)) for path in crops_paths]  # one track per file
    crops = [c for cs in per_track for c in cs]
    faces = stages.search_tracks(model.G, model.space, crops, config, model.device)
    unit = {int(c.track_id) for c in crops}
    tracks = [t for t in store.scan_from_arrays(load_arrays(scan_path)).tracks if t.track_id in unit]
    identity = measure_identity(tracks, crops, faces)
    by_track: dict[int, list[Any]] = {}
    for face in faces:
        by_track.setdefault(int(face.track_id), []).append(face)
    for track_crops, out in zip(per_track, outs, strict=True):
        tid = int(track_crops[0].track_id) if track_crops else None
        mine = by_track.get(tid, []) if tid is not None else []
        figures = identity.get(tid) if tid is not None else None
        save_arrays(out, **store.restorations_to_arrays(mine), **identity_to_arrays(figures))
    if reporter is not None:
        reporter.add(P.FACE_FRAMES_RESTORED, len(faces))
        reporter.flush(wait=True)
    return {
        "faces": {tid: [face_record(f) for f in fs] for tid, fs in by_track.items()},
        "identity": identity,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


@portable_errors
def search_anchors_unit(
    model: SearchModel,
    crops_path: str,
    chunks: Sequence[Any],
    config: Config,
    out: str,
    reporter: P.ProgressReporter | None,
) -> dict[str, Any]:
    """The anchor chain of one chunked track (one frame per chunk), stored with the anchors' states."""
    import ray

    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.workdir import load_arrays, save_arrays

    crops = store.crops_from_arrays(load_arrays(crops_path))
    faces, states = stages.search_anchors(model.G, model.space, crops, chunks, config, model.device)
    save_arrays(out, **store.restorations_to_arrays(faces), **stages.states_to_arrays(states))
    if reporter is not None:
        reporter.add(P.FACE_FRAMES_RESTORED, len(faces))
        reporter.flush(wait=True)
    return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


@portable_errors
def search_chunk_unit(
    model: SearchModel,
    crops_path: str,
    anchors_path: str,
    chunks: Sequence[Any],
    index: int,
    config: Config,
    out: str,
    reporter: P.ProgressReporter | None,
) -> dict[str, Any]:
    """One chunk of a chunked track, from its anchor's stored state, landing on the next anchor's."""
    import ray

    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.workdir import load_arrays, save_arrays

    crops = store.crops_from_arrays(load_arrays(crops_path))
    states = stages.states_from_arrays(load_arrays(anchors_path))
    after = states[index + 1] if index + 1 < len(states) else None
    faces = stages.search_chunk(
        model.G, model.space, crops, chunks, index, states[index], after, config, model.device
    )
    save_arrays(out, **store.restorations_to_arrays(faces))
    if reporter is not None:
        reporter.add(P.FACE_FRAMES_RESTORED, len(faces))
        reporter.flush(wait=True)
    return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


@portable_errors
def finish_chunked_track(
    scan_path: str, crops_path: str, anchors_path: str, chunk_paths: Sequence[str], out: str
) -> dict[str, Any]:
    """Join a chunked track's anchors and chunks into its result, measure its identity, store both."""
    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.report import identity_to_arrays, measure_identity
    from pipeline.run.workdir import load_arrays, save_arrays

    crops = store.crops_from_arrays(load_arrays(crops_path))
    anchors = store.restorations_from_arrays(load_arrays(anchors_path))
    parts = [store.restorations_from_arrays(load_arrays(p)) for p in chunk_paths]
    faces = stages.join_chunked(anchors, parts)
    tid = int(crops[0].track_id)
    tracks = [t for t in store.scan_from_arrays(load_arrays(scan_path)).tracks if t.track_id == tid]
    identity = measure_identity(tracks, crops, faces)
    save_arrays(out, **store.restorations_to_arrays(faces), **identity_to_arrays(identity.get(tid)))
    return {"faces": {tid: [face_record(f) for f in faces]}, "identity": identity}


@portable_errors
def compose_task(
    video: str,
    info: Any,
    start: int,
    end: int,
    sources: Sequence[tuple[str, str]],
    gray: bool,
    config: Config,
    out: str,
    reporter: P.ProgressReporter | None,
) -> str:
    """Decode, upscale, paste the faces of [start, end) and encode a video-only part."""
    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.workdir import load_arrays

    placements: list[stages.FacePlacement] = []
    for crops_path, search_path in sources:
        affine = {
            c.frame_index: (c.crop_to_frame, c.image.shape[0])
            for c in store.crops_from_arrays(load_arrays(crops_path))
        }
        for r in store.restorations_from_arrays(load_arrays(search_path)):
            if start <= r.frame_index < end:
                placements.append(stages.FacePlacement(r, *affine[r.frame_index]))
    placements.sort(key=lambda p: (p.restoration.frame_index, p.restoration.track_id))
    # The writer encodes to a temporary name and renames at the end: a killed task leaves no part.
    stages.compose_segment(Path(video), info, start, end, placements, gray, config, Path(out))
    if reporter is not None:
        reporter.add(P.SEGMENTS_ENCODED)
        reporter.flush(wait=True)
    return out


def stored_results(path: Path) -> tuple[list[dict[str, Any]], dict[str, float] | None]:
    """A stored track's face rows and identity figures (None when none were stored)."""
    from pipeline.faces import store
    from pipeline.run.report import identity_from_arrays
    from pipeline.run.workdir import load_arrays

    arrays = load_arrays(path)
    return [face_record(f) for f in store.restorations_from_arrays(arrays)], identity_from_arrays(arrays)
