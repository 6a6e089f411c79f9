"""Recall-first scan for anonymisation: every face the detectors saw, in every frame it may be in.

The plan's scan (cuts, detection, tracking) runs with the `anonymize` preset's settings (both
detectors, a lower threshold, no confirmation of doubtful faces); its stitch step then calls
`complete_tracks` with every frame's detections. Per shot:
- a detection that no track covers (the tracker dropped it as a likely false positive) becomes a
  track of its own: recall matters more than precision here;
- tracks that vanish and come back nearby within `anon.bridge` frames are joined, the missed
  frames interpolated ("bridged");
- every track is extended `anon.extend` frames before its first and after its last row
  ("extended"), moving on at its end velocity, never across a cut.
Each face-frame carries its kind, so the audit can say which frames were seen and which inferred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import AnonConfig
from pipeline.faces.scan import ScanResult
from pipeline.faces.track import box_iou
from pipeline.types import Detection, Shot, Track, TrackFrame

# How a face-frame came to be: seen by a detector, filled by the tracker, joined over a longer gap,
# added before/after a track, or a lone detection the tracker had dropped.
KINDS = ("detected", "interpolated", "bridged", "extended", "stray")


@dataclass(frozen=True)
class AnonScan:
    """The scan an anonymisation works from."""

    result: ScanResult  # shots and the final (bridged, extended) tracks; track ids from 0
    kinds: dict[tuple[int, int], str]  # (track id, frame index) -> one of KINDS
    raw_detections: int  # every detection either detector made (before tracking)


def _covered(box: np.ndarray, rows: Sequence[TrackFrame]) -> bool:
    if not rows:
        return False
    iou = box_iou(box[None], np.stack([r.box for r in rows]))[0]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = any(r.box[0] <= cx <= r.box[2] and r.box[1] <= cy <= r.box[3] for r in rows)
    return bool(iou.max() >= 0.3 or inside)


def _shot_of(shots: Sequence[Shot], frame: int) -> int:
    for s in shots:
        if s.start <= frame < s.end:
            return s.index
    return shots[-1].index


def _rows_between(a: TrackFrame, b: TrackFrame, kind: str) -> list[tuple[TrackFrame, str]]:
    span = b.frame_index - a.frame_index
    out = []
    for k in range(1, span):
        w = k / span
        box = ((1 - w) * a.box + w * b.box).astype(np.float32)
        marks = ((1 - w) * a.landmarks + w * b.landmarks).astype(np.float32)
        out.append((TrackFrame(a.track_id, a.frame_index + k, box, marks, 0.0, True), kind))
    return out


def _near(a: TrackFrame, b: TrackFrame, gap: int) -> bool:
    """Could `b` be the face `a` showed `gap` frames earlier? Close in place and size."""
    size_a, size_b = float(a.box[3] - a.box[1]), float(b.box[3] - b.box[1])
    if min(size_a, size_b) <= 0 or max(size_a, size_b) > 2.0 * min(size_a, size_b):
        return False
    ca, cb = (a.box[:2] + a.box[2:]) / 2, (b.box[:2] + b.box[2:]) / 2
    return bool(np.hypot(*(ca - cb)) <= max(size_a, size_b) * (0.5 + 0.1 * gap))


def complete_tracks(
    shots: Sequence[Shot],
    tracks: Sequence[Track],
    raw: dict[int, list[Detection]],  # frame -> every raw detection of that frame (source px)
    anon: AnonConfig,
    span: tuple[int, int],  # [start, end) of the scanned frames
) -> tuple[list[Track], dict[tuple[int, int], str]]:
    """Tracks with lone detections added, gaps bridged and ends extended; renumbered from 0."""
    if not shots:
        return [], {}
    by_frame: dict[int, list[TrackFrame]] = {}
    for t in tracks:
        for r in t.frames:
            by_frame.setdefault(r.frame_index, []).append(r)
    # Each track as rows with kinds; lone detections join as one-row tracks.
    runs: list[tuple[int, list[tuple[TrackFrame, str]]]] = [
        (t.shot, [(r, "interpolated" if r.interpolated else "detected") for r in t.frames]) for t in tracks
    ]
    for frame, found in sorted(raw.items()):
        for det in found:
            if not _covered(det.box, by_frame.get(frame, [])):
                row = TrackFrame(-1, frame, det.box.astype(np.float32), det.landmarks, det.score, False)
                runs.append((_shot_of(shots, frame), [(row, "stray")]))
    # Bridge: join a run to the nearest later run of its shot that starts within `bridge` frames.
    merged = True
    while merged:
        merged = False
        runs.sort(key=lambda r: (r[0], r[1][0][0].frame_index))
        for i, (shot, rows) in enumerate(runs):
            last = rows[-1][0]
            best = None
            for j, (shot_j, rows_j) in enumerate(runs):
                first = rows_j[0][0]
                gap = first.frame_index - last.frame_index
                if j == i or shot_j != shot or gap < 1 or gap > anon.bridge + 1:
                    continue
                if _near(last, first, gap) and (best is None or gap < best[1]):
                    best = (j, gap)
            if best is not None:
                j = best[0]
                joined = rows + _rows_between(last, runs[j][1][0][0], "bridged") + runs[j][1]
                runs = [r for k, r in enumerate(runs) if k not in (i, j)] + [(shot, joined)]
                merged = True
                break
    # Extend both ends inside the shot and the scanned span, then renumber.
    shot_span = {s.index: (max(s.start, span[0]), min(s.end, span[1])) for s in shots}
    runs.sort(key=lambda r: (r[0], r[1][0][0].frame_index, float(r[1][0][0].box[0])))
    out: list[Track] = []
    kinds: dict[tuple[int, int], str] = {}
    for tid, (shot, rows) in enumerate(runs):
        lo, hi = shot_span[shot]
        rows = _extend(rows, anon.extend, lo, hi)
        frames = tuple(
            TrackFrame(tid, r.frame_index, r.box, r.landmarks, r.score, r.interpolated) for r, _ in rows
        )
        out.append(Track(tid, shot, frames))
        kinds.update({(tid, r.frame_index): k for r, k in rows})
    return out, kinds


def _extend(rows: list[tuple[TrackFrame, str]], n: int, lo: int, hi: int) -> list[tuple[TrackFrame, str]]:
    """`n` rows before and after (inside [lo, hi)), moving at the track's end velocities."""

    def velocity(a: TrackFrame, b: TrackFrame) -> tuple[np.ndarray, np.ndarray]:
        """Change per frame from a to b (b later)."""
        d = max(b.frame_index - a.frame_index, 1)
        return (b.box - a.box) / d, (b.landmarks - a.landmarks) / d

    first, last = rows[0][0], rows[-1][0]
    k = min(len(rows) - 1, 3)
    still = (np.zeros(4, np.float32), np.zeros((5, 2), np.float32))
    v_first = velocity(first, rows[k][0]) if k else still
    v_last = velocity(rows[-1 - k][0], last) if k else still
    before = []
    for step in range(1, n + 1):
        f = first.frame_index - step
        if f < lo:
            break
        row = TrackFrame(
            first.track_id,
            f,
            (first.box - v_first[0] * step).astype(np.float32),
            (first.landmarks - v_first[1] * step).astype(np.float32),
            0.0,
            True,
        )
        before.append((row, "extended"))
    after = []
    for step in range(1, n + 1):
        f = last.frame_index + step
        if f >= hi:
            break
        row = TrackFrame(
            last.track_id,
            f,
            (last.box + v_last[0] * step).astype(np.float32),
            (last.landmarks + v_last[1] * step).astype(np.float32),
            0.0,
            True,
        )
        after.append((row, "extended"))
    return before[::-1] + rows + after
