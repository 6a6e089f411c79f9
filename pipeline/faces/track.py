"""From per-frame detections to per-person tracks: linking, gap filling, landmark smoothing.

Linking is SORT-style without the Kalman filter: each open track predicts its box from its last
box and a constant velocity; detections are matched to predictions greedily by IoU. A track that
misses up to `max_gap` frames lives on; missed frames are later filled by linear interpolation, so
every track covers consecutive frames. Tracks never cross a shot boundary, and tracks with fewer
than `min_hits` real detections are dropped as false positives.

Landmarks are smoothed with a local linear fit over a centred window: it removes the detector's
frame-to-frame jitter while following steady motion (pans, zooms) without lag.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.types import Detection, Shot, Track, TrackFrame


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9))


@dataclass
class _OpenTrack:
    detections: list[Detection] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # box change per frame

    def predict(self, frame_index: int) -> np.ndarray:
        last = self.detections[-1]
        return np.asarray(last.box + self.velocity * (frame_index - last.frame_index))

    def add(self, det: Detection) -> None:
        if self.detections:
            last = self.detections[-1]
            step = (det.box - last.box) / (det.frame_index - last.frame_index)
            # Blend rather than replace: one noisy box should not throw the prediction off.
            self.velocity = 0.5 * self.velocity + 0.5 * step if len(self.detections) > 1 else step
        self.detections.append(det)


def link_detections(
    detections: Sequence[Sequence[Detection]],  # per frame of one shot, in frame order
    max_gap: int = 5,
    iou_threshold: float = 0.2,
) -> list[list[Detection]]:
    """Link the detections of one shot into tracks (each a list of detections, frame-ordered)."""
    open_tracks: list[_OpenTrack] = []
    done: list[list[Detection]] = []
    for dets in detections:
        if not dets:
            continue
        frame = dets[0].frame_index
        alive = []
        for track in open_tracks:
            if frame - track.detections[-1].frame_index > max_gap + 1:
                done.append(track.detections)
            else:
                alive.append(track)
        open_tracks = alive
        unmatched = list(range(len(dets)))
        if open_tracks:
            predicted = np.stack([t.predict(frame) for t in open_tracks])  # [T, 4]
            boxes = np.stack([d.box for d in dets])  # [D, 4]
            iou = box_iou(predicted, boxes)
            taken_t: set[int] = set()
            for flat in np.argsort(-iou, axis=None):
                ti, di = divmod(int(flat), len(dets))
                if iou[ti, di] < iou_threshold:
                    break
                if ti in taken_t or di not in unmatched:
                    continue
                open_tracks[ti].add(dets[di])
                taken_t.add(ti)
                unmatched.remove(di)
        for di in unmatched:
            track = _OpenTrack()
            track.add(dets[di])
            open_tracks.append(track)
    done.extend(t.detections for t in open_tracks)
    done.sort(key=lambda ds: (ds[0].frame_index, float(ds[0].box[0])))
    return done


def fill_gaps(detections: Sequence[Detection]) -> list[tuple[int, np.ndarray, np.ndarray, float, bool]]:
    """Rows (frame, box, landmarks, score, interpolated) for every frame from first to last detection."""
    rows = []
    for a, b in itertools.pairwise(detections):
        rows.append((a.frame_index, a.box, a.landmarks, a.score, False))
        span = b.frame_index - a.frame_index
        for k in range(1, span):
            w = k / span
            rows.append(
                (
                    a.frame_index + k,
                    ((1 - w) * a.box + w * b.box).astype(np.float32),
                    ((1 - w) * a.landmarks + w * b.landmarks).astype(np.float32),
                    0.0,
                    True,
                )
            )
    last = detections[-1]
    rows.append((last.frame_index, last.box, last.landmarks, last.score, False))
    return rows


def smooth_series(values: np.ndarray, window: int) -> np.ndarray:
    """Local linear fit over a centred window (shrunk at the ends) along axis 0: [T, ...] -> [T, ...].

    Constant-velocity motion passes through unchanged; frame-to-frame noise is averaged out.
    """
    n = values.shape[0]
    half = window // 2
    if half == 0 or n < 3:
        return values.copy()
    flat = values.reshape(n, -1).astype(np.float64)  # [T, K]
    out = np.empty_like(flat)
    for t in range(n):
        lo, hi = max(0, t - half), min(n, t + half + 1)
        x = np.arange(lo, hi, dtype=np.float64) - t
        y = flat[lo:hi]
        xm = x.mean()
        var = ((x - xm) ** 2).sum()
        slope = ((x - xm)[:, None] * (y - y.mean(0))).sum(0) / var if var > 0 else 0.0
        out[t] = y.mean(0) + slope * (0 - xm)  # the fitted line evaluated at t
    return out.reshape(values.shape).astype(values.dtype)


def build_tracks(
    shots: Sequence[Shot],
    detections: dict[int, list[Detection]],  # frame index -> detections (frames without faces may be absent)
    max_gap: int = 5,
    smooth_window: int = 5,
    min_hits: int = 3,
    first_track_id: int = 0,
    min_hit_fraction: float = 0.5,
) -> list[Track]:
    """Tracks for every shot: linked, gap-filled, smoothed, numbered from `first_track_id`.

    A track needs `min_hits` real detections, and real detections in at least `min_hit_fraction`
    of its frames: a real face is found most of the time, a false positive only now and then.
    """
    tracks: list[Track] = []
    next_id = first_track_id
    for shot in shots:
        per_frame = [detections.get(f, []) for f in range(shot.start, shot.end)]
        for linked in link_detections(per_frame, max_gap=max_gap):
            span = linked[-1].frame_index - linked[0].frame_index + 1
            if len(linked) < min_hits or len(linked) < min_hit_fraction * span:
                continue
            rows = fill_gaps(linked)
            boxes = smooth_series(np.stack([r[1] for r in rows]), smooth_window)  # [T, 4]
            marks = smooth_series(np.stack([r[2] for r in rows]), smooth_window)  # [T, 5, 2]
            frames = tuple(
                TrackFrame(next_id, r[0], boxes[i], marks[i], r[3], r[4]) for i, r in enumerate(rows)
            )
            tracks.append(Track(next_id, shot.index, frames))
            next_id += 1
    return tracks
