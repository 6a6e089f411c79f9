"""The stage functions every executor calls: pure, picklable, small inputs and outputs.

Frames never travel between stages: each stage that needs pixels decodes its own frame range from
the video's path. Stages exchange tracks, crops (native-size faces), restorations (latents and the
generator's face) and paths of encoded parts. The in-process executor (`pipeline.run.local`) calls
them in order; the Ray executor calls the same functions in tasks and actors.

    scan(video, cfg, start, end)                 -> ScanResult (shots, tracks, gray)
    make_crops(video, tracks, gray, cfg)         -> list[FaceCrop]
    search_tracks(G, space, crops, cfg, device)  -> list[FaceRestoration] (one unit of search_units)
    search_anchors(G, space, crops, chunks, cfg, device) -> anchors of a chunked track (+ their states)
    search_chunk(G, space, crops, chunks, index, anchor, next_anchor, cfg, device) -> one chunk's faces
    compose_segment(video, info, start, end, faces, gray, cfg, out_part) -> Path (video-only part)
    mux_parts(parts, video, output, info, preset, cfg)                   -> the output file

How work is divided is shared too (`search_plan`, `search_units`, `segments`): it decides which faces
share a search batch and so, in the last bits, the result; both executors divide it the same way.
A track longer than `search.chunk_len` (when set) is searched as runs of its own frames
(`pipeline.search.chunks`): one unit for its anchor chain, then one unit per chunk, which can run on
different workers at once; `join_chunked` puts them together into the track's result.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.errors import DecodeError
from pipeline.faces.scan import ScanResult, scan_frames
from pipeline.io.presets import EncoderPreset
from pipeline.types import FaceCrop, FaceRestoration, Track, VideoFrame, VideoInfo, VideoStreamInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FacePlacement:
    """Where one restored face goes: its restoration and the alignment it was cropped with."""

    restoration: FaceRestoration
    crop_to_frame: np.ndarray  # [2, 3] continuous crop pixel -> continuous source pixel
    crop_size: int  # S: the crop's side in pixels (the face's native size)


def search_units(track_ids: Sequence[int], batch_size: int) -> list[tuple[int, ...]]:
    """Tracks searched together (in lockstep batches) as one unit: consecutive ids, `batch_size` at a time.

    Give it every track of the scan, never only those still to do: the grouping then depends only on
    the tracks and the batch size, so a rerun batches every face exactly as an uninterrupted run did,
    and both executors batch alike. This matters: the search's float results depend (in the last bits,
    then visibly through the warm starts) on which faces share a batch.
    """
    ids = sorted(track_ids)
    size = max(1, batch_size)
    return [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]


@dataclass(frozen=True)
class SearchPlan:
    """How a scan's tracks are searched: whole tracks in batched units, long tracks in chunks."""

    units: list[tuple[int, ...]]  # whole tracks searched together (`search_units` of the short tracks)
    chunked: dict[int, list[Any]]  # track id -> its chunks (pipeline.search.plan.Chunk), at least two


def search_plan(track_lengths: Mapping[int, int], cfg: Config) -> SearchPlan:
    """Which tracks are searched whole (batched as `search_units` batches them) and which in chunks.

    With search.chunk_len 0 (off), or for tracks no longer than chunk_len, nothing changes: every track
    is searched whole. Smoothing over time (search.smooth_sigma) needs every frame's state of a track
    at once, so with it tracks are searched whole too.
    """
    from pipeline.search.plan import plan_chunks

    s = cfg.search
    chunked: dict[int, list[Any]] = {}
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
    return SearchPlan(search_units(whole, s.batch_size), chunked)


def segments(frames: int, cfg: Config) -> list[tuple[int, int]]:
    """The frame ranges [start, end) composed and encoded as separate parts (run.segment_frames each).

    Inverse telecine renumbers frames as it decodes, so it can only read from frame 0: one segment.
    """
    length = max(1, frames if cfg.io.inverse_telecine else cfg.run.segment_frames)
    return [(s, min(s + length, frames)) for s in range(0, frames, length)]


def _frames(video: Path, cfg: Config, start: int, end: int | None, max_size: int | None = None) -> Any:
    from pipeline.io.decode import iter_frames

    return iter_frames(
        video,
        start=start,
        end=end,
        max_size=max_size,
        deinterlace=cfg.io.deinterlace,
        inverse_telecine=cfg.io.inverse_telecine,
        max_damaged_fraction=cfg.io.max_damaged_fraction,
    )


def scan(
    video: Path, cfg: Config, start: int = 0, end: int | None = None, first_track_id: int = 0
) -> ScanResult:
    """Shots and face tracks of frames [start, end) (a range boundary acts as a cut).

    Sources larger than the detector's copy are reduced by the decoder itself, which is much
    cheaper than converting full-size frames to RGB and shrinking them afterwards.
    """
    from pipeline.io.probe import probe

    vs = probe(video).video
    reader = _frames(video, cfg, start, end, max_size=cfg.scan.detect_size)

    def pairs() -> Iterator[tuple[int, np.ndarray]]:
        with reader:
            for frame in reader:
                yield frame.index, frame.image

    return scan_frames(pairs(), cfg.scan, first_track_id=first_track_id, source_size=(vs.width, vs.height))


def make_crops(video: Path, tracks: Sequence[Track], gray: bool, cfg: Config) -> list[FaceCrop]:
    """The aligned native-size crop of every track frame, decoding only the tracks' frame range."""
    from pipeline.faces.align import make_crop

    if not tracks:
        return []
    rows: dict[int, list[Any]] = defaultdict(list)
    for track in tracks:
        for row in track.frames:
            rows[row.frame_index].append(row)
    start, end = min(t.start for t in tracks), max(t.end for t in tracks)
    if cfg.io.inverse_telecine:
        start = 0  # inverse telecine numbers frames as it decodes: it must read from the start
    crops: list[FaceCrop] = []
    with _frames(video, cfg, start, end) as reader:
        for frame in reader:
            for row in rows.get(frame.index, ()):
                crops.append(make_crop(frame.image, row, gray))
    crops.sort(key=lambda c: (c.track_id, c.frame_index))
    return crops


def search_target(crop: np.ndarray, resolution: int) -> np.ndarray:
    """The search target: the native crop, or, for faces larger than the generator, the crop reduced
    to the generator's resolution (the prior cannot add detail the footage already has)."""
    import cv2

    if crop.shape[0] <= resolution:
        return crop
    return np.asarray(cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA))


def search_tracks(
    G: Any,  # pipeline.prior.stylegan2.Generator, already on `device`
    space: Any,  # pipeline.search.latent_space.GaussianizedW fitted for G
    crops: Sequence[FaceCrop],
    cfg: Config,
    device: str = "cpu",
) -> list[FaceRestoration]:
    """Warm-started latent search over whole tracks (several tracks advance in one batch)."""
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
        inputs.append(TrackInput(tid, images, [c.frame_index for c in cs], cs[0].gray))
    results = restore_tracks_batched(G, inputs, settings=cfg.search, space=space, device=device)
    # Exactly what the work directory keeps (faces in float16): a run that pastes the faces it holds
    # and a resumed one that pastes them from the store compose the same values.
    return as_stored([face for result in results for face in result.restorations])


def _track_targets(
    crops: Sequence[FaceCrop], chunks: Sequence[Any], resolution: int, span: tuple[int, int] | None = None
) -> tuple[list[np.ndarray], list[int]]:
    """A chunked track's search targets and frame indices, checked against its chunk plan. With
    `span` only the targets of track positions [span) are made; the others are left as they are."""
    from pipeline.errors import SearchError

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
    G: Any, space: Any, crops: Sequence[FaceCrop], chunks: Sequence[Any], cfg: Config, device: str = "cpu"
) -> tuple[list[FaceRestoration], list[Any]]:
    """The anchor chain of one chunked track (`crops`: the whole track's): each chunk's first frame,
    restored in order; returns the anchors (as stored) and their SearchStates (on the CPU)."""
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
    )
    return as_stored(anchors), states


def search_chunk(
    G: Any,
    space: Any,
    crops: Sequence[FaceCrop],
    chunks: Sequence[Any],  # the track's plan (pipeline.search.plan.Chunk)
    index: int,  # the chunk to search
    anchor_state: Any,  # SearchState of the chunk's anchor
    next_anchor_state: Any,  # SearchState of the next chunk's anchor, None for the last chunk
    cfg: Config,
    device: str = "cpu",
) -> list[FaceRestoration]:
    """One chunk of a chunked track (`crops`: the whole track's): its frames after its anchor, warm-
    started from the anchor and landing on the next one, as `restore_track_chunked` runs them."""
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
    )
    settings = replace(cfg.search, smooth_sigma=0.0)
    (result,) = restore_tracks_batched(G, [unit], settings=settings, space=space, device=device)
    return as_stored(result.restorations)


def join_chunked(
    anchors: Sequence[FaceRestoration], parts: Sequence[Sequence[FaceRestoration]]
) -> list[FaceRestoration]:
    """A chunked track's faces in frame order: each chunk's anchor, then the chunk's other frames."""
    return [face for anchor, part in zip(anchors, parts, strict=True) for face in (anchor, *part)]


def chunk_artifacts(track_id: int, chunks: Sequence[Any]) -> tuple[str, list[str]]:
    """Work-dir names (in the search key's directory) of a chunked track's anchors and chunks."""
    stem = f"chunked-{track_id:06d}"
    return f"{stem}-anchors.npz", [f"{stem}-chunk-{c.index:04d}.npz" for c in chunks]


def states_to_arrays(states: Sequence[Any]) -> dict[str, np.ndarray]:
    """One-face SearchStates (anchors) as float32 arrays, exactly: latents and every noise map."""
    if not states:
        return {}
    out = {"state_latents": np.concatenate([s.latents.detach().cpu().numpy() for s in states])}
    for i in range(len(states[0].noise)):
        out[f"state_noise_{i:03d}"] = np.concatenate([s.noise[i].detach().cpu().numpy() for s in states])
    return out


def states_from_arrays(a: Mapping[str, np.ndarray]) -> list[Any]:
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
    from pipeline.faces import store

    return store.restorations_from_arrays(store.restorations_to_arrays(faces))


def upscale_frame(image: np.ndarray, cfg: Config) -> np.ndarray:
    """The whole frame upscaled by cfg.upscale (classical resampling, dtype kept)."""
    from pipeline.frame.upscale import upscale

    return np.asarray(upscale(image, cfg.upscale.scale, cfg.upscale.method))


def compose_frame(frame: VideoFrame, faces: Sequence[FacePlacement], gray: bool, cfg: Config) -> np.ndarray:
    """One output frame: upscaled, with every restored face of that frame pasted in."""
    from pipeline.faces.align import rescale_affine
    from pipeline.frame.compose import FacePaste, paste_faces

    up = upscale_frame(frame.image, cfg)
    scale = up.shape[1] / frame.image.shape[1]
    pastes = [
        FacePaste(
            p.restoration.image,
            rescale_affine(
                p.crop_to_frame, src_scale=p.restoration.image.shape[0] / p.crop_size, dst_scale=scale
            ),
        )
        for p in faces
    ]
    return paste_faces(up, pastes, gray=gray) if pastes else up


def compose_segment(
    video: Path,
    info: VideoInfo,
    start: int,
    end: int,
    faces: Sequence[FacePlacement],
    gray: bool,
    cfg: Config,
    out_part: Path,
) -> Path:
    """Decode [start, end), upscale, paste faces, encode a video-only part (source timestamps kept).

    The part is written under a temporary name and renamed when complete (VideoWriter), so an
    existing part is always a finished one.
    """
    from pipeline.io.presets import get_preset
    from pipeline.io.writer import VideoWriter

    by_frame: dict[int, list[FacePlacement]] = defaultdict(list)
    for p in faces:
        by_frame[p.restoration.frame_index].append(p)
    vs = info.video
    writer: VideoWriter | None = None
    try:
        with _frames(video, cfg, start, end) as reader:
            for frame in reader:
                image = compose_frame(frame, by_frame.get(frame.index, ()), gray, cfg)
                if writer is None:
                    # Opened at the first frame: inverse telecine sets the time base as it decodes.
                    writer = VideoWriter(
                        out_part,
                        width=image.shape[1],
                        height=image.shape[0],
                        time_base=Fraction(reader.time_base),
                        frame_rate=reader.frame_rate,
                        preset=get_preset(cfg.io.preset),
                        crf=cfg.io.crf,
                        deep=image.dtype == np.uint16,
                        source_pix_fmt=vs.pix_fmt,
                        color=vs.color,
                        sample_aspect_ratio=vs.sample_aspect_ratio,
                    )
                    writer.open()
                writer.write(image, frame.pts)
        if writer is None:
            raise DecodeError(video, f"no frame decoded in [{start}, {end})")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return out_part


def decoded_frame_rate(video: VideoStreamInfo, cfg: Config) -> Fraction | None:
    """The rate of the stream the stages decode: the source's, or after inverse telecine 4/5 of it
    (24000/1001 from a telecined 30000/1001), as the decoder's `FrameReader.frame_rate` gives it."""
    from pipeline.io.decode import IVTC_RATE

    rate = video.frame_rate
    return rate * IVTC_RATE if rate is not None and cfg.io.inverse_telecine else rate


def mux_parts(
    parts: Sequence[str | Path],
    video: Path,
    output: Path,
    info: VideoInfo,
    preset: EncoderPreset,
    cfg: Config,
    *,
    overwrite: bool = False,
) -> Path:
    """Join the encoded parts with the source's audio and subtitles into `output` (see io.mux.mux),
    declaring the source's colour, rotation and pixel aspect and the decoded stream's frame rate."""
    from pipeline.io.mux import mux

    vs = info.video
    return mux(
        [Path(p) for p in parts],
        video,
        output,
        overwrite=overwrite,
        color=vs.color,
        rotation=vs.rotation,
        frame_rate=decoded_frame_rate(vs, cfg),
        variable_frame_rate=vs.variable_frame_rate and not cfg.io.inverse_telecine,
        sample_aspect_ratio=vs.sample_aspect_ratio,
        codec_tag=preset.codec_tag,
    )
