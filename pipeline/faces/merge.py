"""One face region, one track: merging a person's tracks, and exclusivity per frame.

Linking by IoU alone splits one person into several tracks: the detector misses the face for longer
than `max_gap` (occlusion, a turn, motion blur) and the face comes back as a new track, or two boxes
on one face (a tight and a loose one) each start their own. After `build_tracks`:

1. tracks of one shot whose boxes cover the same region in the frames they share (overlap of the
   smaller box above `overlap`, on average) are one person: merged, the better row kept per frame;
2. a track that starts at most `merge_gap` frames after another ended, near where it ended and of
   a similar size, is the same person when SFace says so (cosine of their end embeddings at least
   the same-person threshold): merged, the gap interpolated;
3. what still overlaps is a conflict: in a frame where two tracks claim the same region, the
   weaker track (lower mean score) gives the frame up; it is split where it gave frames up and
   pieces shorter than `min_frames` are dropped.
Tracks are renumbered in order of (start, left edge) from `first_track_id` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.faces.track import smooth_series
from pipeline.metrics.identity import SAME_PERSON_COSINE
from pipeline.types import Track, TrackFrame

# Embedding of a track's first ("start") or last ("end") real detections; None when unknown.
Identity = Callable[[Track, str], "np.ndarray | None"]


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    iy = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    area = min(float((a[2] - a[0]) * (a[3] - a[1])), float((b[2] - b[0]) * (b[3] - b[1])))
    return ix * iy / max(area, 1e-9)


def _shared_overlaps(a: Track, b: Track) -> dict[int, float]:
    rows_b = {r.frame_index: r for r in b.frames}
    return {
        r.frame_index: _overlap_of_smaller(r.box, rows_b[r.frame_index].box)
        for r in a.frames
        if r.frame_index in rows_b
    }


def _better(x: TrackFrame, y: TrackFrame) -> TrackFrame:
    if x.interpolated != y.interpolated:
        return y if x.interpolated else x
    return x if x.score >= y.score else y


def merge_two(a: Track, b: Track, smooth_window: int) -> Track:
    """One track from two of the same shot: the better row per shared frame, gaps interpolated."""
    rows: dict[int, TrackFrame] = {}
    for r in (*a.frames, *b.frames):
        rows[r.frame_index] = _better(rows[r.frame_index], r) if r.frame_index in rows else r
    frames = sorted(rows)
    full: list[TrackFrame] = []
    for f0, f1 in zip(frames, [*frames[1:], frames[-1] + 1], strict=True):
        full.append(rows[f0])
        for k in range(1, f1 - f0):
            w = k / (f1 - f0)
            ra, rb = rows[f0], rows[f1]
            full.append(
                TrackFrame(
                    a.track_id,
                    f0 + k,
                    ((1 - w) * ra.box + w * rb.box).astype(np.float32),
                    ((1 - w) * ra.landmarks + w * rb.landmarks).astype(np.float32),
                    0.0,
                    True,
                )
            )
    boxes = smooth_series(np.stack([r.box for r in full]), smooth_window)  # [T, 4]
    marks = smooth_series(np.stack([r.landmarks for r in full]), smooth_window)  # [T, 5, 2]
    return Track(
        a.track_id,
        a.shot,
        tuple(
            TrackFrame(a.track_id, r.frame_index, boxes[i], marks[i], r.score, r.interpolated)
            for i, r in enumerate(full)
        ),
    )


def _near(a: Track, b: Track, gap: int) -> bool:
    """Whether b starts near where a ended, at a similar size (allowing a face's motion over the gap)."""
    ea, sb = a.frames[-1].box, b.frames[0].box
    wa, wb = float(ea[2] - ea[0]), float(sb[2] - sb[0])
    if not 0.5 <= wb / max(wa, 1e-6) <= 2.0:
        return False
    ca, cb = (ea[:2] + ea[2:]) / 2, (sb[:2] + sb[2:]) / 2
    return float(np.hypot(*(cb - ca))) <= max(wa, wb) * (1.0 + 0.05 * gap)


def _mean_score(t: Track) -> float:
    return float(np.mean([r.score for r in t.frames]))


def exclusive_tracks(
    tracks: Sequence[Track],
    *,
    overlap: float = 0.5,
    merge_gap: int = 50,
    identity: Identity | None = None,
    smooth_window: int = 7,
    min_frames: int = 3,
    first_track_id: int = 0,
) -> tuple[list[Track], int]:
    """(tracks after merging and exclusivity, number of merges made); see the module docstring."""
    out: list[Track] = []
    merges = 0
    for shot in sorted({t.shot for t in tracks}):
        group = sorted((t for t in tracks if t.shot == shot), key=lambda t: (t.start, t.track_id))
        changed = True
        while changed:
            changed = False
            for i in range(len(group)):
                for j in range(i + 1, len(group)):
                    a, b = group[i], group[j]
                    shared = _shared_overlaps(a, b)
                    same = bool(shared) and float(np.mean(list(shared.values()))) > overlap
                    if not same and not shared:
                        first, second = (a, b) if a.end <= b.start else (b, a)
                        gap = second.start - first.end
                        if 0 <= gap <= merge_gap and _near(first, second, gap):
                            ea = identity(first, "end") if identity else None
                            sb = identity(second, "start") if identity else None
                            same = ea is not None and sb is not None and float(ea @ sb) >= SAME_PERSON_COSINE
                    if same:
                        group[i] = merge_two(a, b, smooth_window)
                        del group[j]
                        merges += 1
                        changed = True
                        break
                if changed:
                    break
        out.extend(_settle_conflicts(group, overlap, min_frames))
    out.sort(key=lambda t: (t.start, float(t.frames[0].box[0])))
    return [_renumber(t, first_track_id + i) for i, t in enumerate(out)], merges


def _settle_conflicts(group: list[Track], overlap: float, min_frames: int) -> list[Track]:
    """Each frame's face region to one track: weaker tracks give up contested frames."""
    order = sorted(group, key=lambda t: (-_mean_score(t), -len(t.frames)))
    taken: list[Track] = []
    for t in order:
        lost = set()
        for s in taken:
            lost |= {f for f, o in _shared_overlaps(t, s).items() if o > overlap}
        if not lost:
            taken.append(t)
            continue
        run: list[TrackFrame] = []
        for r in (*t.frames, None):
            if r is None or r.frame_index in lost:
                if len(run) >= min_frames and any(not x.interpolated for x in run):
                    taken.append(Track(t.track_id, t.shot, tuple(run)))
                run = []
            else:
                run.append(r)
    return taken


def _renumber(t: Track, track_id: int) -> Track:
    if t.track_id == track_id:
        return t
    frames = tuple(
        TrackFrame(track_id, r.frame_index, r.box, r.landmarks, r.score, r.interpolated) for r in t.frames
    )
    return Track(track_id, t.shot, frames)
