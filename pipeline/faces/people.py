"""People: the tracks of one person, in every shot of a video, linked into one person.

A track never crosses a cut, so a person seen in three shots is three tracks. After the stitch,
each track gets an identity: the mean of the SFace embeddings the scan took of its real detections
(on the detector's copy of the source frame, every few frames), keeping only rows where the face is
large enough and frontal enough for SFace to mean something. Tracks are then clustered per video by
average linkage: the two groups of tracks with the highest mean pairwise cosine are joined while
that mean is at least `PEOPLE_COSINE`, and never when two of their tracks are on screen in the same
frame (one person is not in two places at once).

A track with no usable embedding (every row too small, too turned, or never embedded) cannot be
decided: it stays its own person, marked `decided=False`. Anonymise hides such a person whatever
the photos say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.identity import SAME_PERSON_COSINE
from pipeline.types import Track, TrackFrame

# Mean pairwise cosine of track identities at which two groups of tracks are one person. Track
# identities are means of several embeddings, so same-person pairs sit well above the single-pair
# threshold; SFace's published one is kept as the bound (measured in scripts/evaluate_people.py).
PEOPLE_COSINE = SAME_PERSON_COSINE
MIN_FACE_PX = 24.0  # face box width (source px) below which an embedding is not used
MAX_TURN = 0.35  # |nose - eye midpoint| / eye distance (0 frontal, ~1 profile) above which neither

Embeddings = Mapping[int, Sequence[tuple[np.ndarray, np.ndarray]]]  # frame -> [(box [4], embedding [128])]


@dataclass(frozen=True)
class Person:
    """One person of a video: their tracks (ids), face-frames, and whether identity decided them;
    `chosen` and `match` once reference photos chose the people, `guide` once reference photos guide
    their restoration (pipeline.faces.choose)."""

    person_id: int
    tracks: tuple[int, ...]
    frames: int
    decided: bool
    thumbs: tuple[Thumb, ...] = ()  # where each track is pictured (its widest real row)
    chosen: bool | None = None  # processed (restored or hidden) under a choice; None: no choice made
    match: str | None = None  # the reference person recognised
    guide: str | None = None  # the reference person whose photos guide their restoration (--reference-photos)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.person_id,
            "tracks": list(self.tracks),
            "frames": self.frames,
            "decided": self.decided,
        }
        if self.chosen is not None:
            out |= {"chosen": self.chosen, "match": self.match}
        if self.guide is not None:
            out |= {"guided_by": self.guide}
        return out | {"thumbs": [t.as_json() for t in self.thumbs]}


@dataclass(frozen=True)
class Thumb:
    """Where a track is pictured on the people sheet: a frame and the face's box there (source px)."""

    track_id: int
    shot: int
    frame: int
    box: tuple[float, float, float, float]

    def as_json(self) -> dict[str, object]:
        return {
            "track_id": self.track_id,
            "shot": self.shot,
            "frame": self.frame,
            "box": [round(v, 2) for v in self.box],
        }


def turn(landmarks: np.ndarray) -> float:
    """How far a face is turned from frontal, from its 5 landmarks: nose offset ÷ eye distance."""
    eyes = landmarks[:2]
    dist = float(np.hypot(*(eyes[1] - eyes[0])))
    return abs(float(landmarks[2, 0] - eyes[:, 0].mean())) / max(dist, 1e-6)


def usable(row: TrackFrame) -> bool:
    """Whether a row's face is large and frontal enough for its embedding to count."""
    return float(row.box[2] - row.box[0]) >= MIN_FACE_PX and turn(row.landmarks) <= MAX_TURN


def track_identity(track: Track, embeddings: Embeddings) -> np.ndarray | None:
    """Unit mean of the embeddings taken at the track's usable real rows (None when there are none)."""
    found = []
    for r in track.frames:
        cands = embeddings.get(r.frame_index, ())
        if r.interpolated or not cands or not usable(r):
            continue
        centre = (r.box[:2] + r.box[2:]) / 2
        dists = [float(np.hypot(*((b[:2] + b[2:]) / 2 - centre))) for b, _ in cands]
        k = int(np.argmin(dists))
        if dists[k] <= 0.5 * float(r.box[2] - r.box[0]):
            found.append(np.asarray(cands[k][1], np.float64))
    if not found:
        return None
    mean = np.mean(found, axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _overlap(a: Track, b: Track) -> bool:
    return a.start < b.end and b.start < a.end


def link_people(
    tracks: Sequence[Track], embeddings: Embeddings, threshold: float = PEOPLE_COSINE
) -> list[Person]:
    """People of a video from its tracks (see the module docstring); ids in order of first frame."""
    found = {t.track_id: track_identity(t, embeddings) for t in tracks}
    ids = {k: v for k, v in found.items() if v is not None}
    decided = [t for t in tracks if t.track_id in ids]
    groups: list[list[Track]] = [[t] for t in decided]
    vec = np.stack([ids[t.track_id] for t in decided]) if decided else np.zeros((0, 128))
    sim = vec @ vec.T  # [n, n] track-to-track cosine
    index = {t.track_id: i for i, t in enumerate(decided)}
    while True:
        best, pair = threshold, None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if any(_overlap(a, b) for a in groups[i] for b in groups[j]):
                    continue
                s = float(
                    np.mean([sim[index[a.track_id], index[b.track_id]] for a in groups[i] for b in groups[j]])
                )
                if s >= best:
                    best, pair = s, (i, j)
        if pair is None:
            break
        groups[pair[0]] += groups.pop(pair[1])
    sets = [(g, True) for g in groups] + [([t], False) for t in tracks if t.track_id not in ids]
    sets.sort(key=lambda gd: min((t.start, t.track_id) for t in gd[0]))
    people = []
    for i, (g, d) in enumerate(sets):
        members = sorted(g, key=lambda t: t.track_id)
        frames = sum(len(t.frames) for t in g)
        people.append(
            Person(i, tuple(t.track_id for t in members), frames, d, tuple(map(track_thumb, members)))
        )
    return people


def track_thumb(track: Track) -> Thumb:
    """A track's widest real row (the earliest of equals): where the people sheet pictures it."""
    rows = [r for r in track.frames if not r.interpolated] or list(track.frames)
    best = max(rows, key=lambda r: (float(r.box[2] - r.box[0]), -r.frame_index))
    x0, y0, x1, y1 = (float(v) for v in best.box)
    return Thumb(track.track_id, track.shot, best.frame_index, (x0, y0, x1, y1))


def people_to_arrays(people: Sequence[Person]) -> dict[str, np.ndarray]:
    """Flat arrays (one row per track) stored beside the stitched scan."""
    rows = [(p, i) for p in people for i in range(len(p.tracks))]
    thumbs = {t.track_id: t for p in people for t in p.thumbs}
    out = {
        "person_track": np.array([p.tracks[i] for p, i in rows], np.int64),
        "person_id": np.array([p.person_id for p, _ in rows], np.int64),
        "person_decided": np.array([p.decided for p, _ in rows], bool),
        "person_frames": np.array([p.frames for p, _ in rows], np.int64),
        # -1: no choice made, 0: not chosen, 1: chosen
        "person_chosen": np.array([-1 if p.chosen is None else int(p.chosen) for p, _ in rows], np.int64),
        "person_match": np.array([p.match or "" for p, _ in rows], str),
        "person_guide": np.array([p.guide or "" for p, _ in rows], str),
    }
    # per track: shot, frame, box of its picture (-1 rows: none stored)
    pics = [thumbs.get(p.tracks[i]) for p, i in rows]
    out["person_thumb"] = np.array(
        [[t.shot, t.frame, *t.box] if t else [-1] * 6 for t in pics], np.float64
    ).reshape(-1, 6)
    return out


def person_of_tracks(a: Mapping[str, np.ndarray]) -> dict[int, int]:
    """track id -> person id, from what `people_to_arrays` stored (empty for a scan without people).

    An undecided track is its own person already (a person of one track)."""
    if "person_id" not in a:
        return {}
    return {int(t): int(p) for t, p in zip(a["person_track"], a["person_id"], strict=True)}


def people_from_arrays(a: Mapping[str, np.ndarray], tracks: Sequence[Track]) -> list[Person] | None:
    """What `people_to_arrays` stored (None for a scan stored without people)."""
    if "person_id" not in a:
        return None
    by_id = {t.track_id: t for t in tracks}
    rows: dict[int, list[int]] = {}
    for j, p in enumerate(a["person_id"]):
        rows.setdefault(int(p), []).append(j)
    people = []
    for pid, js in sorted(rows.items()):
        ids = tuple(int(a["person_track"][j]) for j in js)
        people.append(_stored_person(a, pid, ids, js, by_id))
    return people


def _stored_person(
    a: Mapping[str, np.ndarray], pid: int, ids: tuple[int, ...], js: Sequence[int], by_id: Mapping[int, Track]
) -> Person:
    j = js[0]
    thumbs = []
    for t, k in zip(ids, js, strict=True):
        if "person_thumb" in a and a["person_thumb"][k][1] >= 0:
            shot, frame, *box = (float(v) for v in a["person_thumb"][k])
            thumbs.append(Thumb(t, int(shot), int(frame), (box[0], box[1], box[2], box[3])))
        elif t in by_id:
            thumbs.append(track_thumb(by_id[t]))
    frames = (
        int(a["person_frames"][j])
        if "person_frames" in a
        else sum(len(by_id[t].frames) for t in ids if t in by_id)
    )
    chosen = int(a["person_chosen"][j]) if "person_chosen" in a else -1
    match = str(a["person_match"][j]) if "person_match" in a else ""
    guide = str(a["person_guide"][j]) if "person_guide" in a else ""
    return Person(
        pid,
        tuple(sorted(ids)),
        frames,
        bool(a["person_decided"][j]),
        tuple(sorted(thumbs, key=lambda t: t.track_id)),
        None if chosen < 0 else bool(chosen),
        match or None,
        guide or None,
    )
