"""Scan: frames in, face tracks out (scene cuts, detection on reduced frames, tracking).

The frames arrive as an iterator, are reduced one by one and detected in small batches, so memory
stays bounded whatever the length of the footage. Frames must be consecutive; the same reduced copy
feeds the cut detector and the face detector.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.config import ScanConfig
from pipeline.faces.detect import FaceDetector, detect_images, make_detector
from pipeline.faces.shots import CutDetector, shots_from_cuts
from pipeline.faces.track import build_tracks
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


def detector_input(image: np.ndarray, detect_size: int, denoise: float) -> np.ndarray:
    """The reduced (or, for tiny sources, enlarged) copy the detector sees: [h, w, 3] uint8 RGB.

    Grain is per source pixel, so it is softened at source resolution before enlarging; reducing
    with area averaging already averages it away.
    """
    import cv2

    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
    h, w = image.shape[:2]
    scale = detect_size / max(h, w)
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
    batch: list[np.ndarray] = []
    batch_idx: list[int] = []
    start = end = None
    gray_votes: list[bool] = []
    count = 0

    def flush() -> None:
        nonlocal count
        for index, found in zip(
            batch_idx, detect_images(detector, batch, batch_idx, size, cfg.min_face), strict=True
        ):
            if found:
                detections[index] = found
                count += len(found)
        batch.clear()
        batch_idx.clear()

    size = (0, 0)
    for index, image in frames:
        if start is None:
            start = index
            size = source_size or (image.shape[1], image.shape[0])
        if gray is None and len(gray_votes) < 5:
            gray_votes.append(is_gray(image))
        # Frames the decoder already reduced had their grain averaged away: no extra softening.
        reduced = image.shape[1] < size[0]
        small = detector_input(image, cfg.detect_size, 0.0 if reduced else cfg.denoise)
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
    if start is None or end is None or cuts is None:
        return ScanResult(0, 0, (), (), 0, bool(gray))
    shots = shots_from_cuts(cuts.finish(), start, end)
    tracks = build_tracks(
        shots,
        detections,
        max_gap=cfg.max_gap,
        smooth_window=cfg.smooth_window,
        min_hits=cfg.min_hits,
        first_track_id=first_track_id,
    )
    gray_final = gray if gray is not None else sum(gray_votes) * 2 > len(gray_votes)
    log.info(
        "scan %d-%d: %d shots, %d detections, %d tracks (%d face-frames)",
        start,
        end,
        len(shots),
        count,
        len(tracks),
        sum(len(t.frames) for t in tracks),
    )
    return ScanResult(start, end, tuple(shots), tuple(tracks), count, gray_final)
