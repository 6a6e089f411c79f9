"""The plan's CPU step functions: each takes paths (and small settings), reads its inputs from the
source video and the work directory, writes its artifacts atomically, and returns something small.

    clean_step     frames [start, end) decoded and film-cleaned once, full size -> a clean segment
    scan_segment   frames [start, end) (+ overlap for the cut detector) -> raw detections and cuts
    stitch_scan    every segment's detections and cuts -> shots and tracks of the whole video
    crops_step     the aligned native-size crops of a search unit's tracks (one file per track)
    compose_step   frames [start, end): upscaled, faces pasted -> an encoded part + per-face records

Search steps (run on search workers that hold the generator) are in `pipeline.run.search_steps`.
Frames are read only through `read_frames` (`pipeline.run.frames`, re-exported here). When faces
are scanned and film cleaning or inverse telecine is on, each segment is decoded and cleaned once by
its clean step, and scan, crops and compose read the stored segments (`stored`) instead of decoding:
detection then sees the same cleaned pictures as compose, reduced by the detector's own resize.

Scanning per segment gives the same tracks as one scan of the whole video: detection is per frame
(batches aligned to absolute frame numbers), the cut detector of a segment starts `scan_overlap`
frames early and reads `CUT_WINDOW` frames past its end, so the cuts it reports in its own range
are those one pass finds, and tracks are built by the stitch step over all detections at once, so a
face that crosses a segment edge is one track.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from pipeline.config import Config
from pipeline.errors import DecodeError
from pipeline.faces import store
from pipeline.faces.align import make_crop
from pipeline.faces.choose import choose
from pipeline.faces.detect import detect_images, make_detector
from pipeline.faces.people import link_people, people_to_arrays
from pipeline.faces.scan import (
    FrameFilter,
    ScanResult,
    detector_input,
    embeddings_from_arrays,
    embeddings_to_arrays,
    is_gray,
    link_tracks,
    scan_frames,
)
from pipeline.faces.shots import CutDetector, shots_from_cuts
from pipeline.files import atomic_path, load_arrays, save_arrays, save_json
from pipeline.frame.grain import Regrain
from pipeline.frame.upscale import make_upscaler as film_upscaler
from pipeline.io.presets import get_preset, output_pix_fmt
from pipeline.io.probe import probe
from pipeline.io.writer import VideoWriter
from pipeline.run.feed import ThreadedWriter, prefetched
from pipeline.run.frames import (
    CleanSegment,
    Frames,
    StoredFrames,
    film_cleaning,
    inverse_telecine,
    read_frames,
    save_segment_meta,
)
from pipeline.run.mode import Hider, Mode, RunReport
from pipeline.run.report import identity_from_arrays, identity_to_arrays
from pipeline.types import Detection, FaceCrop, FaceRestoration, Track, TrackFrame, VideoFrame, VideoInfo

if TYPE_CHECKING:
    import av
    from torch import Tensor

    from pipeline.faces.choose import PeopleChoice, References
    from pipeline.faces.people import Person
    from pipeline.faces.scan import Embeddings
    from pipeline.frame.compose import FacePlacement, Pasted
    from pipeline.run.matte import SegmentMatte


__all__ = [
    "CUT_WINDOW",
    "GRAY_FRAMES",
    "clean_step",
    "compose_step",
    "crops_step",
    "load_placements",
    "load_track",
    "read_frames",
    "save_track",
    "scan_overlap",
    "scan_segment",
    "stitch_scan",
]

log = logging.getLogger(__name__)

Upscale = Callable[[np.ndarray], np.ndarray]  # a whole frame upscaled (pipeline.frame.upscale.make_upscaler)


class _Picture(Protocol):
    @property
    def image(self) -> np.ndarray: ...


P = TypeVar("P", bound=_Picture)  # a decoded frame (VideoFrame, or a stored segment's)
F = TypeVar("F")  # a hiding mode's face record (`Hider`)

CUT_WINDOW = 2  # frames the adaptive cut detector looks either side of a frame (PySceneDetect's default)
GRAY_FRAMES = 5  # first frames of the video that decide black and white (as faces.scan.scan_frames)


def scan_overlap(cfg: Config) -> int:
    """Frames a scan segment's cut detector reads before its range: its window and twice the shortest
    shot, so a cut it reports is not suppressed by its own start, and one the single pass suppresses
    (too close after an earlier cut) is seen suppressed here too."""
    return 2 * max(cfg.scan.min_shot, 1) + 2 * CUT_WINDOW + 2


# ----------------------------------------------------------------------------- clean


def clean_step(video: str, info: VideoInfo, cfg: Config, segment: CleanSegment) -> dict[str, int]:
    """Decode frames [start, end) and film-clean them once (with the cleaner's context frames), at
    full size, into the segment's artifact: scan, crops and compose read them from there."""

    index: list[int] = []
    pts: list[int] = []
    grain: list[np.ndarray | None] = []
    filled: list[np.ndarray | None] = []
    frames = read_frames(video, cfg, segment.start, segment.end)
    with frames, atomic_path(segment.frames) as tmp:
        assert isinstance(frames, Frames)
        out: np.memmap | None = None
        for frame in frames:
            if out is None:
                shape = (segment.end - segment.start, *frame.image.shape)
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=frame.image.dtype, shape=shape)
            if frame.image.shape != out.shape[1:]:
                raise DecodeError(
                    Path(video), f"frame {frame.index} changes the picture size to {frame.image.shape[1::-1]}"
                )
            out[frame.index - segment.start] = frame.image
            index.append(frame.index)
            pts.append(frame.pts)
            grain.append(frame.grain)
            filled.append(frame.filled)
        if out is None:
            raise DecodeError(Path(video), f"no frame decoded in [{segment.start}, {segment.end})")
        out.flush()
        del out  # the memory map is closed before the file is renamed
    save_segment_meta(segment, frames, index, pts, grain, filled)
    return {"frames": len(index)}


# ----------------------------------------------------------------------------- scan


def _detector_frames(
    video: Path, cfg: Config, start: int, end: int | None, stored: Sequence[CleanSegment] = ()
) -> Frames | StoredFrames:
    if stored:  # full-size cleaned frames: the detector's own resize reduces them (detector_input)
        return read_frames(video, cfg, start, end, stored=stored)
    return read_frames(video, cfg, start, end, max_size=cfg.scan.detect_size)


def scan_segment(
    video: str,
    info: VideoInfo,
    cfg: Config,
    start: int,
    end: int,
    total: int,
    out: str,
    stored: Sequence[CleanSegment] = (),
) -> dict[str, int]:
    """Detections in frames [start, end) and the cuts there; stored in `out` (npz). `stored`: the
    clean segments covering the frames read (the overlap before, and frame 0's for the gray vote)."""

    s = cfg.scan
    path = Path(video)
    size = (info.video.width, info.video.height)
    first = 0 if inverse_telecine(cfg) else max(0, start - scan_overlap(cfg))
    last = min(total, end + CUT_WINDOW)
    votes: list[bool] = []
    if first > 0:  # black and white is decided on the video's first frames, whichever segment this is
        with _detector_frames(path, cfg, 0, GRAY_FRAMES, stored) as frames:
            votes = [is_gray(f.image) for f in frames]
    detector = make_detector(s.detector, s.score_threshold)
    keep = FrameFilter(s, size)  # only faces are faces (per frame), with embeddings for the stitch
    cuts: CutDetector | None = None
    found: list[Detection] = []
    embeddings: Embeddings = {}
    batch: list[np.ndarray] = []
    batch_idx: list[int] = []
    decoded_end = start

    def flush() -> None:
        detected = detect_images(detector, batch, batch_idx, size, s.min_face)
        for image, index, dets in zip(batch, batch_idx, detected, strict=True):
            kept, vectors = keep(image, index, dets)
            found.extend(kept)
            if vectors:
                embeddings[index] = [(d.box, v) for d, v in zip(kept, vectors, strict=True)]
        batch.clear()
        batch_idx.clear()

    with _detector_frames(path, cfg, first, last, stored) as frames:
        for frame in frames:
            index, image = frame.index, frame.image
            if first == 0 and len(votes) < GRAY_FRAMES:
                votes.append(is_gray(image))
            reduced = image.shape[1] < size[0]  # the decoder reduced it: grain is averaged away
            small = detector_input(image, s.detect_size, 0.0 if reduced else s.denoise, s.max_enlarge)
            if cuts is None:
                cuts = CutDetector(s.cut_threshold, s.cut_min_change, s.min_shot, votes[0])
            cuts.push(index, small)
            if start <= index < end:
                batch.append(small)
                batch_idx.append(index)
                decoded_end = index + 1
                # Batches aligned to absolute frame numbers: the same batches as one pass from frame 0.
                if (index + 1) % max(s.batch_size, 1) == 0:
                    flush()
    flush()
    if cuts is None:
        raise DecodeError(path, f"no frame decoded in [{start}, {end})")
    mine = [c for c in cuts.finish() if start <= c < end]
    save_arrays(
        out,
        meta=np.array([start, end, decoded_end], np.int64),
        gray_votes=np.array(votes, bool),
        cuts=np.array(mine, np.int64),
        frame_index=np.array([d.frame_index for d in found], np.int64),
        box=np.array([d.box for d in found], np.float32).reshape(-1, 4),
        landmarks=np.array([d.landmarks for d in found], np.float32).reshape(-1, 5, 2),
        score=np.array([d.score for d in found], np.float32),
        **embeddings_to_arrays(embeddings),
    )
    keep.log(start, end)
    log.info("scan %d-%d: %d detections, %d cut(s)", start, end, len(found), len(mine))
    return {"frames": end - start, "detections": len(found)}


def scan_whole(video: str | Path, cfg: Config) -> ScanResult:
    """One scan of the whole video in one pass (`pipeline.faces.scan.scan_frames`): what the segment
    steps and the stitch give together (the reference of their tests, and of scripts/bench_scan.py)."""

    vs = probe(video).video
    with _detector_frames(Path(video), cfg, 0, None) as frames:
        pairs = ((f.index, f.image) for f in frames)
        return scan_frames(pairs, cfg.scan, source_size=(vs.width, vs.height))


def stitch_scan(
    cfg: Config,
    segments: Sequence[str],
    out: str,
    mode: Mode[RunReport],
    choice: PeopleChoice | None = None,
    references: References | None = None,
) -> dict[str, int]:
    """Shots and tracks of the whole video from every segment's detections and cuts (stored as the
    ScanResult `pipeline.faces.store` writes): tracks are linked across segment edges. A mode may
    store its own arrays (`Mode.stitch_arrays`: anonymise completes the tracks for recall). Under a
    `choice` of people only the chosen people's tracks are stored as tracks (every later step sees
    those only); the people, chosen or not, are stored beside them, each with the reference person
    who guides their search under `references` (pipeline.faces.choose.guides)."""
    from pipeline.faces import store

    detections: dict[int, list[Detection]] = defaultdict(list)
    embeddings: Embeddings = {}
    cuts: list[int] = []
    votes: list[bool] = []
    end = 0
    count = 0
    for i, path in enumerate(segments):
        a = load_arrays(path)
        if i == 0:
            votes = [bool(v) for v in a["gray_votes"]]
        end = max(end, int(a["meta"][2]))
        cuts.extend(int(c) for c in a["cuts"])
        embeddings.update(embeddings_from_arrays(a))
        for j, index in enumerate(a["frame_index"]):
            detections[int(index)].append(
                Detection(int(index), a["box"][j], a["landmarks"][j], float(a["score"][j]))
            )
            count += 1
    shots = shots_from_cuts(cuts, 0, end)
    tracks = link_tracks(shots, dict(detections), embeddings, cfg.scan)
    gray = sum(votes) * 2 > len(votes)
    result = ScanResult(0, end, tuple(shots), tuple(tracks), count, gray)
    if mode.stitch_arrays is not None:
        arrays = mode.stitch_arrays(result, detections, cfg)
        tracks = list(store.scan_from_arrays(arrays).tracks)
    else:
        arrays = store.scan_to_arrays(result)
    people = link_people(tracks, embeddings)  # one person across cuts (pipeline.faces.people)
    if choice is not None:
        arrays, people = _chosen_only(arrays, people, tracks, embeddings, choice, mode)
    if references is not None:
        from pipeline.faces.choose import guides

        people = guides(people, tracks, embeddings, references)
        named = ", ".join(f"person {p.person_id} = {p.guide}" for p in people if p.guide)
        log.info("reference photos (%s): %s", references.folder, named or "nobody recognised")
    save_arrays(out, **arrays, **people_to_arrays(people))
    log.info(
        "%d shots, %d face tracks of %d people (%d undecided), %d face-frames; footage is %s",
        len(shots),
        len(tracks),
        len(people),
        sum(not p.decided for p in people),
        sum(len(t.frames) for t in tracks),
        "black and white" if gray else "colour",
    )
    return {"tracks": len(tracks), "people": len(people), "face_frames": sum(len(t.frames) for t in tracks)}


def _chosen_only(
    arrays: dict[str, np.ndarray],
    people: list[Person],
    tracks: Sequence[Track],
    embeddings: Embeddings,
    choice: PeopleChoice,
    mode: Mode[RunReport],
) -> tuple[dict[str, np.ndarray], list[Person]]:
    """The scan's arrays with the tracks of chosen people only, and the people with their choice."""

    people = choose(people, tracks, embeddings, choice, undecided_chosen=mode.hides_undecided)
    keep = np.array(sorted(t for p in people if p.chosen for t in p.tracks), np.int64)
    rows = np.isin(arrays["track_id"], keep)
    out = {k: (v[rows] if k in TRACK_ROWS else v) for k, v in arrays.items()}
    if "kind_key" in arrays:  # anonymise: each face-frame's kind, by (track, frame)
        kinds = np.isin(arrays["kind_key"][:, 0], keep)
        out["kind_key"], out["kind"] = arrays["kind_key"][kinds], arrays["kind"][kinds]
    log.info(
        "people (%s %s): %d of %d chosen (%s), %d undecided%s",
        choice.rule,
        choice.folder,
        sum(bool(p.chosen) for p in people),
        len(people),
        ", ".join(f"person {p.person_id} = {p.match}" for p in people if p.match) or "none recognised",
        sum(not p.decided for p in people),
        " (processed: the safe rule)" if mode.hides_undecided else "",
    )
    return out, people


# the scan's arrays with one row per track-frame (pipeline.faces.store.scan_to_arrays)
TRACK_ROWS = frozenset({"track_id", "shot", "frame_index", "box", "landmarks", "score", "interpolated"})


# ----------------------------------------------------------------------------- crops


def crops_step(
    video: str,
    info: VideoInfo,
    cfg: Config,
    scan_path: str,
    track_ids: Sequence[int],
    outs: Sequence[str],
    mode: Mode[RunReport],
    stored: Sequence[CleanSegment] = (),
) -> dict[str, int]:
    """The aligned native-size crops of `track_ids` (one search unit or one chunked track), reading
    their frame span once (from the clean segments `stored`, when given); one npz per track
    (`pipeline.faces.store` crops, plus each crop's `size`). Only the face-frames the mode can serve
    get a crop (`Mode.crops_of`; anonymise masks the rest)."""

    scanned = store.scan_from_arrays(load_arrays(scan_path))
    wanted = set(track_ids)
    tracks = [t for t in scanned.tracks if t.track_id in wanted]
    rows: dict[int, list[TrackFrame]] = defaultdict(list)
    size = (info.video.width, info.video.height)
    for track in tracks:
        for row in mode.crops_of(track.frames, size, cfg):
            rows[row.frame_index].append(row)
    crops: dict[int, list[FaceCrop]] = {tid: [] for tid in track_ids}
    if tracks:
        start, end = min(t.start for t in tracks), max(t.end for t in tracks)
        with read_frames(video, cfg, start, end, stored=stored) as frames:
            for frame in frames:
                for row in rows.get(frame.index, ()):
                    crops[row.track_id].append(make_crop(frame.image, row, scanned.gray))
    for tid, out in zip(track_ids, outs, strict=True):
        mine = sorted(crops[tid], key=lambda c: c.frame_index)
        sizes = np.array([c.image.shape[0] for c in mine], np.int64)
        save_arrays(out, **store.crops_to_arrays(mine), size=sizes)
    return {"crops": sum(len(v) for v in crops.values())}


def load_crops(path: str | Path) -> list[FaceCrop]:

    return store.crops_from_arrays(load_arrays(path))


# ----------------------------------------------------------------------------- search results


def save_track(
    npz: str | Path, npy: str | Path, faces: Sequence[FaceRestoration], identity: Mapping[str, float] | None
) -> None:
    """A track's restorations: the small rows (latents, psnr, ...) and identity figures in `npz`, the
    face images [T, R, R, 3] float16 in `npy` (read back a frame range at a time, memory-mapped).
    The npy is written first: an existing npz means both are complete."""

    arrays = store.restorations_to_arrays(faces)
    images = arrays.pop("image", np.zeros((0, 1, 1, 3), np.float16))
    with atomic_path(npy) as tmp, tmp.open("wb") as f:
        np.save(f, images)
    save_arrays(npz, **arrays, **identity_to_arrays(identity))


def load_track(
    npz: str | Path, npy: str | Path, start: int | None = None, end: int | None = None
) -> list[FaceRestoration]:
    """A stored track's restorations, only those of frames [start, end) when given (their images
    only are read from disk)."""

    a = load_arrays(npz)
    frames = a["track_id"]
    if len(frames) == 0:
        return []
    index = a["frame_index"]
    keep = np.ones(len(index), bool)
    if start is not None:
        keep &= index >= start
    if end is not None:
        keep &= index < end
    rows = np.nonzero(keep)[0]
    if len(rows) == 0:
        return []
    images = np.load(npy, mmap_mode="r")
    return [
        FaceRestoration(
            int(a["track_id"][i]),
            int(index[i]),
            a["latents"][i],
            np.asarray(images[i], np.float32),
            float(a["psnr"][i]),
            bool(a["met_bound"][i]),
            int(a["steps"][i]),
        )
        for i in rows
    ]


def face_rows(npz: str | Path) -> tuple[list[dict[str, Any]], dict[str, float] | None]:
    """A stored track's report rows (track id, frame, PSNR, met bound, steps) and identity figures,
    without its images."""

    a = load_arrays(npz)
    rows = [
        {
            "track_id": int(a["track_id"][i]),
            "frame": int(a["frame_index"][i]),
            "psnr_db": round(float(a["psnr"][i]), 3),
            "met_bound": bool(a["met_bound"][i]),
            "steps": int(a["steps"][i]),
        }
        for i in range(len(a["track_id"]))
    ]
    return rows, identity_from_arrays(a)


# ----------------------------------------------------------------------------- compose


def load_placements(
    sources: Sequence[tuple[str, str, str]], start: int, end: int
) -> dict[int, list[FacePlacement]]:
    """frame index -> FacePlacements of frames [start, end), from (crops, search npz, search npy)
    paths of the tracks shown there: only this segment's faces are read."""
    from pipeline.frame.compose import FacePlacement

    by_frame: dict[int, list[FacePlacement]] = defaultdict(list)
    for crops_path, npz, npy in sources:
        with np.load(crops_path, allow_pickle=False) as c:  # the affines only, not the crop images
            affine = {
                int(f): (m, int(s))
                for f, m, s in zip(c["frame_index"], c["crop_to_frame"], c["size"], strict=True)
            }
        for r in load_track(npz, npy, start, end):
            m, size = affine[r.frame_index]
            by_frame[r.frame_index].append(FacePlacement(r, m, size))
    return by_frame


def _writer(
    out: Path,
    size: tuple[int, int],
    deep: bool,
    frames: Frames | StoredFrames,
    info: VideoInfo,
    cfg: Config,
    native: str | None = None,
) -> VideoWriter:

    vs = info.video
    return VideoWriter(
        out,
        width=size[0],
        height=size[1],
        time_base=Fraction(frames.time_base),
        frame_rate=frames.frame_rate,
        preset=get_preset(cfg.io.preset),
        crf=cfg.io.crf,
        deep=deep,
        native_format=native,
        source_pix_fmt=vs.pix_fmt,
        color=vs.color,
        sample_aspect_ratio=vs.sample_aspect_ratio,
        rgb_matrix=cfg.io.rgb_matrix,
        threads=cfg.run.encoder_threads or None,  # one per task by default: workers set the parallelism
    )


def _threaded(writer: VideoWriter, depth: int) -> VideoWriter | ThreadedWriter[VideoWriter]:
    """The writer, encoding on its own thread (`depth` frames queued) unless `depth` is 0."""
    return ThreadedWriter(writer, depth) if depth > 0 else writer


def passes_through(info: VideoInfo, cfg: Config) -> bool:
    """Nothing changes the pictures of a segment without faces (scale 1, no learned upscaler, no
    film cleaning) and the stored format is the source's: its decoded frames go to the encoder as
    they are, skipping a lossy and costly RGB round trip."""

    vs = info.video
    if cfg.upscale.scale != 1 or getattr(cfg.upscale, "model", None) or film_cleaning(cfg):
        return False
    if inverse_telecine(cfg):
        return False
    stored = output_pix_fmt(get_preset(cfg.io.preset), vs.pix_fmt, vs.bit_depth > 8, vs.width, vs.height)
    return stored == vs.pix_fmt


def pictures_path(records_path: str) -> str:
    """Where a compose segment keeps the output pictures the report shows, beside its records."""
    return records_path.removesuffix(".records.json") + ".pictures.npz"


class _Kept:
    """The pictures (RGB uint8) of the frames in `keep` of a segment passed through (`native`: the
    decoded frames, in the output's pixel format, as the encoder takes them), for the report
    (`pictures_path`): a few frames, so the report need not decode the output again."""

    def __init__(self, keep: Sequence[int]) -> None:
        self.keep = set(keep)
        self.frames: dict[int, np.ndarray] = {}

    def native(self, index: int, av_frame: av.VideoFrame) -> None:
        if index in self.keep:
            self.frames[index] = av_frame.to_ndarray(format="rgb24")

    def save(self, records_path: str) -> None:
        if self.frames:
            order = sorted(self.frames)
            images = np.stack([self.frames[i] for i in order])  # [N, H, W, 3] uint8
            save_arrays(pictures_path(records_path), frame_index=np.array(order, np.int64), image=images)


def film_stats_path(records_path: str) -> str:
    """film: where a compose segment's cleaning figures are kept, beside its records."""
    return records_path.removesuffix(".records.json") + ".film.json"


def make_upscaler(cfg: Config) -> Upscale:
    """The whole-frame upscaler compose uses: the learned model when `upscale.model` is set (loaded
    once per process), else the classical `cfg.upscale.method` (pipeline.frame.upscale)."""

    return film_upscaler(cfg)


def compose_device(upscaler: Upscale | None, cfg: Config | None = None) -> str:
    """Where compose's torch stages run: a learned upscaler's device (the step then holds a GPU
    share under Ray); without one, the CUDA device `film.device` or `run.device` names outright
    (then the plain upscale runs there too: `plain_on_device`), else the CPU. `run.device=auto`
    keeps such a compose on the CPU: it asks Ray for no GPU, and on a CPU OpenCV is the faster."""
    device = getattr(upscaler, "device", None)
    if device is not None:
        return str(device)
    if cfg is not None:
        for named in (cfg.film.device, cfg.run.device):
            if named.startswith("cuda"):
                return named
    return "cpu"


def plain_on_device(upscaler: Upscale | None, device: str) -> bool:
    """Whether compose's classical upscale runs in torch on `device` (a CUDA device and no learned
    upscaler; on the CPU OpenCV's polyphase filter stays, it is the faster)."""
    return device.startswith("cuda") and getattr(upscaler, "device", None) is None


def upscaled_frames(
    frames: Iterable[P], upscaler: Upscale | None
) -> Iterator[tuple[P, Tensor | np.ndarray | None]]:
    """Each frame with its upscale (None without an upscaler): a learned upscaler's frames go
    through its `many_on_device` (or `many`), `upscaler.batch` at a time (one forward pass per tile
    for the lot), and come as tensors on its device where it has that (a numpy image otherwise)."""
    many = getattr(upscaler, "many", None)
    n = max(1, int(getattr(upscaler, "batch", 1))) if many is not None else 1
    group: list[P] = []
    for frame in frames:
        group.append(frame)
        if len(group) < n:
            continue
        yield from _upscale_group(group, upscaler, many)
        group = []
    if group:
        yield from _upscale_group(group, upscaler, many)


def _upscale_group(
    group: list[P], upscaler: Upscale | None, many: Callable[[list[np.ndarray]], Iterable[np.ndarray]] | None
) -> Iterator[tuple[P, Tensor | np.ndarray | None]]:
    if upscaler is None:
        ups: list[Tensor | np.ndarray | None] = [None] * len(group)
    elif many is not None:
        # a learned upscaler's frames stay on its device for compose (`many_on_device`)
        ups = list(getattr(upscaler, "many_on_device", many)([f.image for f in group]))
    else:
        ups = [np.asarray(upscaler(f.image)) for f in group]
    yield from zip(group, ups, strict=True)


def _hidden(
    hider: Hider[F], frame: VideoFrame, faces: Sequence[F], gray: bool, cfg: Config, regrain: Regrain | None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A frame of a mode that hides faces: `faces` hidden (`Hider.frame`), the film's grain added
    back at the output's size when the film is regrained."""
    image, rows = hider.frame(frame.image, faces, gray, cfg)
    if regrain is not None:
        scale = image.shape[1] / frame.image.shape[1]
        image = regrain.apply_to(image, frame.grain, frame.index, scale)
    return image, rows


def _composed(
    frames: Iterable[VideoFrame],
    by_frame: Mapping[int, Sequence[FacePlacement]],
    hide: Mapping[int, Sequence[F]],
    hider: Hider[F] | None,
    gray: bool,
    cfg: Config,
) -> Iterator[tuple[VideoFrame, np.ndarray, list[dict[str, Any]], list[Pasted]]]:
    """Each frame of a compose segment as written: (frame, output image, its face records, the
    faces pasted in it); faces restored and pasted, or, for a mode that hides faces, hidden."""
    from pipeline.frame.compose import Steadiness, compose_frame
    from pipeline.frame.tensor_ops import upscale_on

    upscaler = make_upscaler(cfg) if hider is None else None
    device = compose_device(upscaler, cfg)
    on_device = hider is None and plain_on_device(upscaler, device)
    steadiness = Steadiness()  # faces' records: output vs footage change along each track
    regrain = Regrain(cfg.film.grain_seed) if cfg.film.grain == "regrain" else None
    for frame, batch_up in upscaled_frames(frames, None if on_device else upscaler):
        up: Tensor | np.ndarray | None = batch_up
        if on_device:  # the plain upscale in torch on the device, the paste there too
            up = upscale_on(frame.image, cfg.upscale.scale, cfg.upscale.method, device)
        faces: list[Pasted] = []
        if hider is not None:
            image, rows = _hidden(hider, frame, hide.get(frame.index, ()), gray, cfg, regrain)
        else:
            image, rows = compose_frame(
                frame, frame.image, by_frame.get(frame.index, ()), gray, cfg, upscaler,
                steadiness, upscaled=up, device=device, regrain=regrain, pasted=faces,
            )  # fmt: skip
        yield frame, image, rows, faces


def _pass_through(
    frames: Frames | StoredFrames,
    out: Path,
    info: VideoInfo,
    cfg: Config,
    matte: SegmentMatte | None,
    kept: _Kept,
) -> VideoWriter:
    """A segment whose pictures nothing changes: its decoded frames (read ahead on a thread) go to
    the encoder as they are. Returns the open writer (the caller closes it)."""
    vs = info.video
    writer = _writer(out, (vs.width, vs.height), vs.bit_depth > 8, frames, info, cfg, native=vs.pix_fmt)
    writer.open()
    with prefetched(frames.native(), cfg.run.prefetch_frames) as native:
        for index, pts, av_frame in native:
            writer.write_frame(av_frame, pts)
            kept.native(index, av_frame)
            if matte is not None:  # nothing changed: an all-zero matte
                matte.add((vs.height, vs.width), index, pts, frames.time_base)
    return writer


def compose_step(
    video: str,
    info: VideoInfo,
    cfg: Config,
    start: int,
    end: int,
    sources: Sequence[tuple[str, str, str]],
    gray: bool,
    out_part: str,
    out_records: str,
    mode: Mode[RunReport],
    scan_path: str | None = None,
    stored: Sequence[CleanSegment] = (),
    keep: Sequence[int] = (),
) -> dict[str, int]:
    """Decode [start, end) (or read it from its clean segment `stored`), upscale, paste the faces of
    these frames, encode a video-only part (source timestamps kept) and store the per-face records
    of `compose_frame` as JSON. A mode that hides faces (`Mode.hider`: anonymise) hides every
    face-frame of the scan instead. The output pictures of the frames in `keep` are stored beside
    the records for the report (`pictures_path`).

    The part is written under a temporary name and renamed when complete (VideoWriter), so an
    existing part is always a finished one; the records are written after it.
    """
    from pipeline.run.matte import SegmentMatte

    by_frame = load_placements(sources, start, end)
    hide: Mapping[int, Sequence[object]] = {}  # a hiding mode's faces, passed on to its `frame`
    hider = mode.hider
    if hider is not None and scan_path is not None:  # every face-frame of the scan is hidden
        hide = hider.segment(scan_path, by_frame, start, end, (info.video.width, info.video.height), cfg)
    records: list[dict[str, Any]] = []
    writer: VideoWriter | ThreadedWriter[VideoWriter] | None = None
    matte = SegmentMatte(out_records) if cfg.film.matte else None  # provenance matte (pipeline.run.matte)
    frames = read_frames(video, cfg, start, end, stored=stored)
    depth = cfg.run.prefetch_frames  # decode ahead and encode beside the device work (pipeline.run.feed)
    kept = _Kept(keep)  # the report's pictures of these frames
    try:
        with frames:
            if not by_frame and not hide and passes_through(info, cfg):
                writer = _pass_through(frames, Path(out_part), info, cfg, matte, kept)
            else:
                with prefetched(frames, depth) as feed:
                    for frame, image, rows, faces in _composed(feed, by_frame, hide, hider, gray, cfg):
                        records.extend(rows)
                        if writer is None:
                            # Opened at the first frame: inverse telecine sets the time base as it decodes.
                            size = (image.shape[1], image.shape[0])
                            deep = image.dtype == np.uint16
                            writer = _threaded(_writer(Path(out_part), size, deep, frames, info, cfg), depth)
                            writer.open()
                        writer.write(image, frame.pts)
                        if matte is not None:
                            matte.add(
                                image.shape[:2], frame.index, frame.pts, frames.time_base, frame.filled, faces
                            )
        if writer is None:
            raise DecodeError(Path(video), f"no frame decoded in [{start}, {end})")
        writer.close()
        if matte is not None:
            matte.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        if matte is not None:
            matte.abort()
        raise
    kept.save(out_records)  # before the records: existing records mean a finished segment
    save_json(out_records, records)
    if frames.film_stats is not None:  # film: what cleaning changed in this segment (merged at the join)
        save_json(
            film_stats_path(out_records),
            {**frames.film_stats.as_dict(), "by_frame": frames.film_stats.by_frame},
        )
    return {"frames": writer.frames_written, "faces": sum(len(v) for v in by_frame.values())}
