"""Face-path measures on output pixels: consistency in frame coordinates, steadiness, track counts.

All take frames as arrays ([H, W, 3] uint8/uint16 or float in [0, 1]) and boxes in source pixels
(x0, y0, x1, y1). "Downscaled" always means `pipeline.frame.project.downscale`, the operator the
search's loss and the projection use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.frame.project import downscale
from pipeline.types import Track


def _float(image: np.ndarray) -> np.ndarray:
    peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)
    return np.asarray(image, np.float64) / peak


def _clip_box(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])), shape[1]), min(int(np.ceil(box[3])), shape[0])
    return x0, y0, x1, y1


def frame_consistency(output: np.ndarray, source: np.ndarray, box: np.ndarray) -> float:
    """PSNR (dB) of the output downscaled to the source's size against the source, inside `box`."""
    lr = downscale(_float(output), source.shape[:2])
    x0, y0, x1, y1 = _clip_box(box, source.shape)
    if x1 <= x0 or y1 <= y0:
        return float("nan")
    mse = float(np.mean((lr[y0:y1, x0:x1] - _float(source)[y0:y1, x0:x1]) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * float(np.log10(1.0 / mse))


def change_ratio(
    outputs: Mapping[int, np.ndarray],  # frame index -> output frame
    sources: Mapping[int, np.ndarray],  # frame index -> source frame
    track: Track,
    scale: float,
) -> float:
    """Steadiness of one track: mean RMS frame-to-frame change of the output inside the face's box
    (× scale) ÷ the same of the source inside its box. No reference needed; 1 = the output moves as
    much as the footage does, more = flicker the film does not have. NaN for one-frame tracks."""
    out_changes, src_changes = [], []
    for a, b in zip(track.frames, track.frames[1:], strict=False):
        if a.frame_index not in outputs or b.frame_index not in outputs:
            continue
        s0, s1 = _float(sources[a.frame_index]), _float(sources[b.frame_index])
        o0, o1 = _float(outputs[a.frame_index]), _float(outputs[b.frame_index])
        x0, y0, x1, y1 = _clip_box(a.box, s0.shape)
        X0, Y0, X1, Y1 = _clip_box(a.box * scale, o0.shape)
        if x1 <= x0 or y1 <= y0 or X1 <= X0 or Y1 <= Y0:
            continue
        src_changes.append(float(np.sqrt(np.mean((s1[y0:y1, x0:x1] - s0[y0:y1, x0:x1]) ** 2))))
        out_changes.append(float(np.sqrt(np.mean((o1[Y0:Y1, X0:X1] - o0[Y0:Y1, X0:X1]) ** 2))))
    if not src_changes:
        return float("nan")
    return float(np.mean(out_changes) / max(float(np.mean(src_changes)), 1e-12))


def outside_faces_psnr(
    output: np.ndarray, plain: np.ndarray, boxes: Sequence[np.ndarray], scale: float
) -> float:
    """PSNR (dB) of the output against the plain upscale outside every face box (× scale, grown by
    half its size on each side to cover the aligned square); 100 when identical."""
    keep = np.ones(output.shape[:2], bool)
    for box in boxes:
        b = np.asarray(box, np.float64) * scale
        grow = 0.5 * np.array([b[2] - b[0], b[3] - b[1]])
        x0, y0, x1, y1 = _clip_box(np.concatenate([b[:2] - grow, b[2:] + grow]), output.shape)
        keep[y0:y1, x0:x1] = False
    if not keep.any():
        return float("nan")
    mse = float(np.mean((_float(output)[keep] - _float(plain)[keep]) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * float(np.log10(1.0 / mse))


def _inside(box: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of `box` inside `truth`, 0 when `box` is more than twice as large (a giant box)."""
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    if area > 2.0 * float((truth[2] - truth[0]) * (truth[3] - truth[1])):
        return 0.0
    ix = max(0.0, float(min(box[2], truth[2]) - max(box[0], truth[0])))
    iy = max(0.0, float(min(box[3], truth[3]) - max(box[1], truth[1])))
    return ix * iy / max(area, 1e-9)


def match_tracks(
    tracks: Sequence[Track],
    truth: Sequence[Sequence[tuple[int, np.ndarray, np.ndarray]]],  # per frame: (person, box, landmarks)
    shot_of: Sequence[int],  # per frame: its shot
    min_inside: float = 0.6,
) -> dict[str, float]:
    """How tracks map onto people (a track row follows the person whose true box, a head with a
    margin, holds most of it): `tracks_per_person` (mean over the (shot, person) pairs found of the
    tracks that follow them; 1 is right), `missed_people`, `false_tracks` (tracks that follow
    nobody) and `coverage` (fraction of true face-frames some track covers)."""
    per_person: dict[tuple[int, int], set[int]] = {}
    false = 0
    covered: set[tuple[int, int]] = set()
    for t in tracks:
        votes: dict[int, int] = {}
        for r in t.frames:
            if r.frame_index >= len(truth):
                continue
            best = max(truth[r.frame_index], key=lambda p: _inside(r.box, p[1]), default=None)
            if best is not None and _inside(r.box, best[1]) >= min_inside:
                votes[best[0]] = votes.get(best[0], 0) + 1
                covered.add((r.frame_index, best[0]))
        if not votes or max(votes.values()) < 0.5 * len(t.frames):
            false += 1
            continue
        person = max(votes, key=lambda k: votes[k])
        per_person.setdefault((shot_of[t.frames[0].frame_index], person), set()).add(t.track_id)
    people = {(shot_of[f], p[0]) for f, rows in enumerate(truth) for p in rows}
    counts = [len(per_person.get(k, set())) for k in sorted(people)]
    found = [c for c in counts if c > 0]
    total = sum(len(rows) for rows in truth)
    return {
        "tracks_per_person": float(np.mean(found)) if found else float("nan"),
        "missed_people": float(sum(c == 0 for c in counts)),
        "false_tracks": float(false),
        "coverage": len(covered) / max(total, 1),
    }


def track_steadiness(records: Sequence[Mapping[str, object]]) -> dict[int, float]:
    """Per track, mean output change ÷ mean source change over its face-frames' compose records
    (`change_out`, `change_src`: `pipeline.frame.compose.Steadiness`); tracks without them are left out."""
    sums: dict[int, list[float]] = {}
    for r in records:
        if "change_out" in r and "change_src" in r:
            s = sums.setdefault(int(r["track_id"]), [0.0, 0.0])  # type: ignore[call-overload]
            s[0] += float(r["change_out"])  # type: ignore[arg-type]
            s[1] += float(r["change_src"])  # type: ignore[arg-type]
    return {tid: out / max(src, 1e-12) for tid, (out, src) in sums.items()}
