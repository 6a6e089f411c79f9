"""Scan: frames in, face tracks out (scene cuts, detection on reduced frames, tracking).

The frames arrive as an iterator, are reduced one by one and detected in small batches, so memory
stays bounded whatever the length of the footage. Frames must be consecutive; the same reduced copy
feeds the cut detector and the face detector.

Only faces are faces: each frame's detections pass `FrameFilter` (plausibility checks, a second
detector for doubtful ones, SFace embeddings), and `link_tracks` makes tracks exclusive and joins one
person's tracks. A segmented scan (the plan's scan steps) uses the same two pieces: `FrameFilter`
per frame where it detects, `link_tracks` where it stitches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import ScanConfig
from pipeline.faces.detect import FaceDetector, detect_images, make_detector
from pipeline.faces.merge import exclusive_tracks
from pipeline.faces.plausible import Refusals, iou, plausible_faces
from pipeline.faces.shots import CutDetector, shots_from_cuts
from pipeline.faces.track import build_tracks
from pipeline.metrics.identity import embed_face
from pipeline.types import Detection, Shot, Track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanResult:
    start: int  # first frame scanned
    end: int  # one past the last frame scanned
    shots: tuple[Shot, ...]
    tracks: tuple[Track, ...]
    detections: int  # raw detections kept (before linking)
    gray: bool  # whether the scanned frames were black and white


def detector_input(
    image: np.ndarray, detect_size: int, denoise: float, max_enlarge: float = 4.0
) -> np.ndarray:
    """The reduced (or, for tiny sources, enlarged) copy the detector sees: [h, w, 3] uint8 RGB.

    Grain is per source pixel, so it is softened at source resolution before enlarging; reducing
    with area averaging already averages it away. Enlarging stops at `max_enlarge`: a face of a
    tiny source enlarged further is a blur the detectors miss, while the whole blurred frame starts
    to look like one giant face to them.
    """
    import cv2

    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
    h, w = image.shape[:2]
    scale = min(detect_size / max(h, w), max_enlarge)
    if scale >= 1.0 and denoise > 0:
        image = cv2.GaussianBlur(image, (0, 0), denoise)
    if abs(scale - 1.0) < 1e-3:
        return np.ascontiguousarray(image)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, size, interpolation=interp))


def is_gray(image: np.ndarray, tolerance: float = 2.0) -> bool:
    """True when the picture carries no colour (mean channel spread under `tolerance` of 255)."""
    img = image.astype(np.float32) * (255.0 / 65535.0 if image.dtype == np.uint16 else 1.0)
    spread = np.abs(img[..., 0] - img[..., 1]).mean() + np.abs(img[..., 1] - img[..., 2]).mean()
    return bool(spread < tolerance)


_OTHER = {"yunet": "centerface", "centerface": "yunet"}  # the detector that confirms doubtful faces

_EMBED_EVERY = 6  # frames between SFace embeddings of faces already seen (see FrameFilter)

EMBEDDING_DIM = 128  # SFace embedding length
Embeddings = dict[int, list[tuple[np.ndarray, np.ndarray]]]  # frame -> [(box [4], SFace embedding [128])]


class FrameFilter:
    """Per frame, after detection: only faces are faces (`pipeline.faces.plausible`: size, landmark
    layout, duplicates, and doubtful detections confirmed by the other detector, made when first
    needed), then each kept face's SFace embedding (taken on the detector's copy), which lets
    `link_tracks` join one person's tracks across gaps.

    Segmented scans call it per frame with the detector's copy of that frame and store the
    embeddings beside the detections (`embeddings_to_arrays`).
    """

    def __init__(self, cfg: ScanConfig, source_size: tuple[int, int]) -> None:
        self.cfg = cfg
        self.size = source_size
        self.refusals = Refusals()
        self._second: FaceDetector | None = None
        self._previous: list[np.ndarray] = []  # the boxes kept in the frame before

    def _second_opinion(self, image: np.ndarray, index: int) -> list[Detection]:
        if self._second is None:
            self._second = make_detector(
                _OTHER.get(self.cfg.detector, "centerface"), self.cfg.confirm_threshold
            )
        return detect_images(self._second, [image], [index], self.size, self.cfg.min_face)[0]

    def __call__(
        self, image: np.ndarray, index: int, found: Sequence[Detection]
    ) -> tuple[list[Detection], list[np.ndarray]]:
        """(the plausible detections, their embeddings: one per detection, or none for this frame;
        always none when `scan.merge_gap` is 0)."""
        kept = plausible_faces(
            found,
            self.size,
            max_fraction=self.cfg.max_face_fraction,
            confirm_below=self.cfg.confirm_below,
            second_opinion=lambda: self._second_opinion(image, index),
            refusals=self.refusals,
        )
        previous, self._previous = self._previous, [d.box for d in kept]
        if self.cfg.merge_gap <= 0 or not kept:
            return kept, []
        # SFace costs ~70 ms a face on a CPU: embed a frame's faces when one of them is new (a track
        # may start there) and every few frames otherwise (a track's last embedding is then at most
        # that many frames before its end, which identifies the person as well).
        new = any(all(iou(d.box, b) < 0.3 for b in previous) for d in kept)
        if not new and index % _EMBED_EVERY:
            return kept, []
        return kept, [_embed(image, d, self.size) for d in kept]

    def log(self, start: int, end: int) -> None:
        r = self.refusals
        if r.total():
            log.info(
                "scan %d-%d: refused %d detections that cannot be faces (%d too large, %d bad landmark "
                "layout, %d duplicates, %d doubtful and unconfirmed; %d doubtful confirmed), e.g. %s",
                start,
                end,
                r.total(),
                r.size,
                r.layout,
                r.duplicate,
                r.unconfirmed,
                r.confirmed,
                "; ".join(r.examples[:3]),
            )


def _embed(image: np.ndarray, det: Detection, source_size: tuple[int, int]) -> np.ndarray:
    """SFace embedding of a detection, taken on the detector's copy of the frame."""

    f = np.array([image.shape[1] / source_size[0], image.shape[0] / source_size[1]], np.float32)
    return embed_face(image, (det.box.reshape(2, 2) * f).reshape(4), det.landmarks * f)


def _track_identity(track: Track, end: str, embeddings: Embeddings, n: int = 3) -> np.ndarray | None:
    """Mean SFace embedding of the first or last `n` embedded real detections of a track, looked for
    within 2 x _EMBED_EVERY frames of that end (None if none)."""
    rows = [r for r in track.frames if not r.interpolated]
    near = rows[: 2 * _EMBED_EVERY] if end == "start" else rows[::-1][: 2 * _EMBED_EVERY]
    found = []
    for r in near:
        cands = embeddings.get(r.frame_index, [])
        if cands:
            centre = (r.box[:2] + r.box[2:]) / 2
            _, emb = min(cands, key=lambda c: float(np.hypot(*((c[0][:2] + c[0][2:]) / 2 - centre))))
            found.append(emb)
        if len(found) == n:
            break
    if not found:
        return None
    mean = np.mean(found, axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12))


def link_tracks(
    shots: Sequence[Shot],
    detections: dict[int, list[Detection]],  # frame -> plausible detections (FrameFilter's)
    embeddings: Embeddings,  # frame -> their (box, embedding); may be empty
    cfg: ScanConfig,
    first_track_id: int = 0,
) -> list[Track]:
    """Tracks from filtered detections: linked, gap-filled, smoothed (`build_tracks`), then one
    person one track and one face region one track per frame (`pipeline.faces.merge`)."""
    linked = build_tracks(
        shots,
        detections,
        max_gap=cfg.max_gap,
        smooth_window=cfg.smooth_window,
        min_hits=cfg.min_hits,
        first_track_id=first_track_id,
    )
    tracks, merges = exclusive_tracks(
        linked,
        overlap=cfg.merge_overlap,
        merge_gap=cfg.merge_gap,
        identity=lambda track, end: _track_identity(track, end, embeddings),
        smooth_window=cfg.smooth_window,
        min_frames=cfg.min_hits,
        first_track_id=first_track_id,
    )
    if merges:
        log.info("%d tracks of the same person merged into others", merges)
    return tracks


def embeddings_to_arrays(embeddings: Embeddings) -> dict[str, np.ndarray]:
    """Flat arrays (frame [N], box [N, 4], embedding [N, 128]) for a work-directory npz."""
    rows = [(f, b, e) for f, pairs in sorted(embeddings.items()) for b, e in pairs]
    return {
        "emb_frame": np.array([r[0] for r in rows], np.int64),
        "emb_box": np.array([r[1] for r in rows], np.float32).reshape(-1, 4),
        # A segment without faces still stores [0, D] (reshape(0, -1) cannot infer D).
        "emb_vector": (
            np.array([r[2] for r in rows], np.float32) if rows else np.zeros((0, EMBEDDING_DIM), np.float32)
        ),
    }


def embeddings_from_arrays(arrays: Mapping[str, np.ndarray]) -> Embeddings:
    """What `embeddings_to_arrays` stored (an npz without them: none)."""
    out: Embeddings = {}
    if "emb_frame" not in arrays:
        return out
    for f, b, e in zip(arrays["emb_frame"], arrays["emb_box"], arrays["emb_vector"], strict=True):
        out.setdefault(int(f), []).append((np.asarray(b), np.asarray(e)))
    return out


def scan_frames(
    frames: Iterable[tuple[int, np.ndarray]],  # (frame index, [H, W, 3] RGB at source size), consecutive
    cfg: ScanConfig,
    gray: bool | None = None,  # None: decide from the first frames
    detector: FaceDetector | None = None,
    first_track_id: int = 0,
    source_size: tuple[int, int] | None = None,  # (w, h) when the frames arrive already reduced
) -> ScanResult:
    """Cut, detect and track faces in a run of consecutive frames.

    Frames may come at source size or already reduced by the decoder (then give `source_size`):
    results are always in source pixels.
    """
    detector = detector or make_detector(cfg.detector, cfg.score_threshold)
    cuts: CutDetector | None = None
    detections: dict[int, list[Detection]] = {}
    embeddings: Embeddings = {}
    batch: list[np.ndarray] = []
    batch_idx: list[int] = []
    start = end = None
    gray_votes: list[bool] = []
    count = 0
    keep: FrameFilter | None = None

    def flush() -> None:
        nonlocal count
        if keep is None:
            return
        for image, index, found in zip(
            batch, batch_idx, detect_images(detector, batch, batch_idx, size, cfg.min_face), strict=True
        ):
            found, vectors = keep(image, index, found)
            if found:
                detections[index] = found
                count += len(found)
            if vectors:
                embeddings[index] = [(d.box, v) for d, v in zip(found, vectors, strict=True)]
        batch.clear()
        batch_idx.clear()

    size = (0, 0)
    for index, image in frames:
        if start is None:
            start = index
            size = source_size or (image.shape[1], image.shape[0])
            keep = FrameFilter(cfg, size)
        if gray is None and len(gray_votes) < 5:
            gray_votes.append(is_gray(image))
        # Frames the decoder already reduced had their grain averaged away: no extra softening.
        reduced = image.shape[1] < size[0]
        small = detector_input(image, cfg.detect_size, 0.0 if reduced else cfg.denoise, cfg.max_enlarge)
        if cuts is None:
            cuts = CutDetector(
                cfg.cut_threshold,
                cfg.cut_min_change,
                cfg.min_shot,
                gray if gray is not None else gray_votes[0],
            )
        cuts.push(index, small)
        batch.append(small)
        batch_idx.append(index)
        end = index + 1
        if len(batch) >= cfg.batch_size:
            flush()
    flush()
    if start is None or end is None or cuts is None or keep is None:
        return ScanResult(0, 0, (), (), 0, bool(gray))
    shots = shots_from_cuts(cuts.finish(), start, end)
    tracks = link_tracks(shots, detections, embeddings, cfg, first_track_id)
    keep.log(start, end)
    gray_final = gray if gray is not None else sum(gray_votes) * 2 > len(gray_votes)
    face_frames = sum(len(t.frames) for t in tracks)
    log.info(
        "scan %d-%d: %d shots, %d detections, %d tracks (%d face-frames)",
        *(start, end, len(shots), count, len(tracks), face_frames),
    )
    return ScanResult(start, end, tuple(shots), tuple(tracks), count, gray_final)
