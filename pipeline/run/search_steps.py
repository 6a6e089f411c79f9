"""The plan's search steps: they run where the generator is loaded (a Ray search actor, or the
in-process executor's one copy) and take it as their first argument, then paths.

    load_search_model(model, device, dtype, gaussian_samples) -> SearchModel   (once per worker)
    references_step(model, cfg, references, out)            the reference photos' latents (guidance)
    search_unit(model, cfg, mode, scan, crops[], outs[], guide) whole tracks in lockstep batches
    search_anchors_step(model, cfg, crops, chunks, out)      a chunked track's anchor chain
    search_chunk_step(model, cfg, crops, anchors, chunks, i, out)  one chunk, landing on the next anchor
    join_chunks(scan, crops, anchors, parts[], out)     a chunked track's result (a CPU step)

A unit is searched by its mode's `search_unit` (`pipeline.run.mode`: restore's latent search, or
anonymise's synthetic faces); anchors and chunks exist only for modes that may chunk (the plan
refuses the others). Identity along each track (SFace) is measured where the crops and restorations
are, for modes that ask for it, and stored with the track's result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from pipeline.config import Config
from pipeline.faces import store
from pipeline.faces.people import person_of_tracks
from pipeline.files import load_arrays, save_arrays
from pipeline.prior.load import load_prior, resolve_device
from pipeline.run.frames import pin_torch
from pipeline.run.mode import Mode, RunReport
from pipeline.run.report import measure_identity
from pipeline.run.steps import load_crops, save_track
from pipeline.types import FaceCrop, FaceRestoration, Track

if TYPE_CHECKING:
    from pipeline.faces.choose import References
    from pipeline.prior.stylegan2 import Generator
    from pipeline.search.latent_space import GaussianizedW
    from pipeline.search.plan import Chunk
    from pipeline.search.state import Guide

log = logging.getLogger(__name__)


@dataclass
class SearchModel:
    """What a search worker holds: the generator on its device and the fitted latent space."""

    G: Generator  # on `device`
    space: GaussianizedW  # fitted for G
    device: str
    description: str
    random: bool
    # held while a step searches: a search actor runs two calls at once (search_actor_options), so the
    # next unit reads its crops and the last one writes its results while this one has the device
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def load_search_model(model: str, device: str, dtype: str, gaussian_samples: int) -> SearchModel:
    """Runs once per search worker, on its node (its GPU when it was given one)."""
    from pipeline.search.latent_space import GaussianizedW

    pin_torch()
    device = resolve_device(device)
    prior = load_prior(model, device, dtype)
    space = GaussianizedW.fit(prior.G, n=gaussian_samples, device=device)
    return SearchModel(prior.G, space, device, prior.description, prior.random)


class ModelDescription(TypedDict):
    description: str
    random: bool  # the seeded random test generator, not trained weights
    device: str


def describe_model(model: SearchModel) -> ModelDescription:

    return {"description": model.description, "random": model.random, "device": model.device}


def _tracks(scan_path: str, ids: set[int]) -> list[Track]:

    return [t for t in store.scan_from_arrays(load_arrays(scan_path)).tracks if t.track_id in ids]


def search_unit(
    model: SearchModel,
    cfg: Config,
    mode: Mode[RunReport],
    scan_path: str,
    crops_paths: Sequence[str],
    outs: Sequence[tuple[str, str]],  # per track: (result npz, faces npy)
    guide_path: str | None = None,  # the references step's latents (reference-guided search)
) -> dict[str, int]:
    """Search one unit (whole tracks advanced in lockstep batches), measure each track's identity,
    store both per track. With `guide_path`, a track whose person was recognised in the reference
    photos is guided by that person's latents."""
    pin_torch()
    per_track = [load_crops(p) for p in crops_paths]  # one track per file
    crops = [c for cs in per_track for c in cs]
    extra: dict[str, Any] = {}
    if mode.units_by_person:  # the unit holds whole people: the mode is told whose tracks these are
        extra["persons"] = person_of_tracks(load_arrays(scan_path))
    unit = {int(c.track_id) for c in crops}
    if guide_path is not None:  # reference photos: recognised people's tracks are guided
        extra["guides"] = _guides(scan_path, guide_path, unit)
    with model.lock:
        faces = mode.search_unit(model.G, model.space, crops, cfg, model.device, **extra)
    identity = measure_identity(_tracks(scan_path, unit), crops, faces) if mode.measures_identity else {}
    by_track: dict[int, list[FaceRestoration]] = {}
    for face in faces:
        by_track.setdefault(int(face.track_id), []).append(face)
    for track_crops, (npz, npy) in zip(per_track, outs, strict=True):
        tid = int(track_crops[0].track_id) if track_crops else -1
        mine = by_track.get(tid, [])
        save_track(npz, npy, mine, identity.get(tid))
        if mine:
            log.info(
                "track %d: %d frames restored, mean consistency %.1f dB",
                tid,
                len(mine),
                sum(f.psnr for f in mine) / len(mine),
            )
    return {"faces": len(faces)}


def references_step(model: SearchModel, cfg: Config, references: References, out: str) -> dict[str, int]:
    """Align every reference photo (as the scan aligns faces) and invert each person's photos into
    latents with the search (pipeline.search.guide); stored per person (by their index)."""
    from pipeline.faces.choose import reference_crop
    from pipeline.search.guide import reference_latents

    pin_torch()
    crops = [[reference_crop(p) for p in photos] for photos in references.photos]
    with model.lock:
        latents = reference_latents(model.G, model.space, crops, settings=cfg.search, device=model.device)
    names = np.array(references.names, str)
    embeddings = np.asarray(references.embeddings, np.float32)  # [P, 128] SFace (the identity term)
    save_arrays(
        out, names=names, latents=np.concatenate([lat.numpy() for lat in latents]), embeddings=embeddings
    )
    log.info("reference photos: %d person(s), %d photo(s) inverted", len(crops), sum(map(len, crops)))
    return {"faces": 0}


def _guides(scan_path: str, guide_path: str, unit: set[int]) -> dict[int, Guide]:
    """Per track of `unit` whose person is guided: their reference person (a `Guide`: latents
    [1, num_ws, w_dim] and SFace embedding [128])."""
    import torch

    from pipeline.faces import store
    from pipeline.faces.people import people_from_arrays
    from pipeline.search.state import Guide

    a = load_arrays(scan_path)
    refs = load_arrays(guide_path)
    by_name = {str(n): i for i, n in enumerate(refs["names"])}
    people = people_from_arrays(a, store.scan_from_arrays(a).tracks) or []
    out: dict[int, Guide] = {}
    for p in people:
        for t in p.tracks:
            if p.guide in by_name and t in unit:
                i = by_name[p.guide]
                latents = torch.from_numpy(np.array(refs["latents"][i : i + 1]))
                embedding = (
                    torch.from_numpy(np.array(refs["embeddings"][i])) if "embeddings" in refs else None
                )
                out[t] = Guide(latents, embedding)
    return out


def _chunked_track(
    crops_path: str, scan_path: str | None, guide_path: str | None
) -> tuple[list[FaceCrop], Guide | None]:
    """A chunked track's crops and the reference person guiding it (a Guide), or None."""
    pin_torch()
    crops = load_crops(crops_path)
    if scan_path is None or guide_path is None or not crops:
        return crops, None
    tid = int(crops[0].track_id)
    return crops, _guides(scan_path, guide_path, {tid}).get(tid)


def search_anchors_step(
    model: SearchModel,
    cfg: Config,
    crops_path: str,
    chunks: Sequence[Chunk],
    out: str,
    scan_path: str | None = None,
    guide_path: str | None = None,  # the references step's latents: a recognised person is guided
) -> dict[str, int]:
    """The anchor chain of one chunked track (one frame per chunk), stored with the anchors' states."""
    from pipeline.search.units import search_anchors, states_to_arrays

    crops, guide = _chunked_track(crops_path, scan_path, guide_path)
    with model.lock:
        faces, states = search_anchors(model.G, model.space, crops, chunks, cfg, model.device, guide)
    save_arrays(out, **store.restorations_to_arrays(faces), **states_to_arrays(states))
    return {"faces": len(faces)}


def search_chunk_step(
    model: SearchModel,
    cfg: Config,
    crops_path: str,
    anchors_path: str,
    chunks: Sequence[Chunk],
    index: int,
    out: str,
    scan_path: str | None = None,
    guide_path: str | None = None,  # the references step's latents: a recognised person is guided
) -> dict[str, int]:
    """One chunk of a chunked track, from its anchor's stored state, landing on the next anchor's."""
    from pipeline.search.units import search_chunk, states_from_arrays

    crops, guide = _chunked_track(crops_path, scan_path, guide_path)
    states = states_from_arrays(load_arrays(anchors_path))
    after = states[index + 1] if index + 1 < len(states) else None
    with model.lock:
        faces = search_chunk(
            model.G, model.space, crops, chunks, index, states[index], after, cfg, model.device, guide
        )
    save_arrays(out, **store.restorations_to_arrays(faces))
    return {"faces": len(faces)}


def join_chunks(
    scan_path: str,
    crops_path: str,
    anchors_path: str,
    chunk_paths: Sequence[str],
    out: tuple[str, str],
) -> dict[str, int]:
    """Join a chunked track's anchors and chunks into its result, measure its identity, store both."""
    from pipeline.search.units import join_chunked

    crops = load_crops(crops_path)
    anchors = store.restorations_from_arrays(load_arrays(anchors_path))
    parts = [store.restorations_from_arrays(load_arrays(p)) for p in chunk_paths]
    faces = join_chunked(anchors, parts)
    tid = int(crops[0].track_id)
    identity = measure_identity(_tracks(scan_path, {tid}), crops, faces)
    save_track(out[0], out[1], faces, identity.get(tid))
    log.info(
        "track %d: %d frames restored in %d chunks, mean consistency %.1f dB",
        tid,
        len(faces),
        len(parts),
        sum(f.psnr for f in faces) / max(len(faces), 1),
    )
    return {"faces": 0}
