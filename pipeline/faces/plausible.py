"""Only faces are faces: detections that cannot be faces are refused before tracking.

Detectors on degraded footage find faces in coffee cups, colour wheels and patterned fabric, and
one real face sometimes comes with a second, larger box around it. Three checks, cheapest first:

1. size: a box taller or wider than `max_face_fraction` of the frame is refused (a detector's
   giant false box on a small frame; archival close-ups leave room around the face);
2. layout: the 5 landmarks must sit inside the box and in a face's order (eyes side by side, the
   nose below them, the mouth below the nose, the corners of the mouth ordered like the eyes) with
   plausible proportions;
3. overlap: a box that mostly contains, or lies mostly inside, a more confident one is the same
   face found twice (non-maximum suppression by IoU misses a small box inside a large one);
4. confirmation: a doubtful detection (score under `confirm_below`) is kept only when a second
   detector (the other network, at a low threshold) finds a face in the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.types import Detection


@dataclass
class Refusals:
    """How many detections each check refused (for the log)."""

    size: int = 0
    layout: int = 0
    duplicate: int = 0
    unconfirmed: int = 0
    confirmed: int = 0  # doubtful detections the second detector agreed with (kept)
    examples: list[str] = field(default_factory=list)

    def total(self) -> int:
        return self.size + self.layout + self.duplicate + self.unconfirmed

    def note(self, kind: str, det: Detection) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            w, h = det.box[2:] - det.box[:2]
            self.examples.append(f"{kind}: frame {det.frame_index} box {w:.0f}x{h:.0f} score {det.score:.2f}")


def size_ok(box: np.ndarray, frame_size: tuple[int, int], max_fraction: float) -> bool:
    """False for a box taller or wider than `max_fraction` of the (width, height) frame."""
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    return w <= max_fraction * frame_size[0] and h <= max_fraction * frame_size[1]


def layout_ok(box: np.ndarray, marks: np.ndarray) -> bool:
    """Whether 5 landmarks [left eye, right eye, nose, mouth left, mouth right] make a face in `box`."""
    lm = np.asarray(marks, np.float64)
    b = np.asarray(box, np.float64)
    bw, bh = b[2] - b[0], b[3] - b[1]
    if bw <= 0 or bh <= 0:
        return False
    pad = 0.15 * np.array([bw, bh])
    if (lm < b[:2] - pad).any() or (lm > b[2:] + pad).any():
        return False  # a landmark far outside its own box
    eyes = lm[1] - lm[0]
    d = float(np.hypot(*eyes))
    if d < 1e-6 or not 0.15 <= d / bw <= 0.85:
        return False
    u = eyes / d  # along the eye line, towards the image-right eye
    if u[0] < 0.3:  # rolled by more than ~70 degrees, or eyes in the wrong order
        return False
    v = np.array([-u[1], u[0]])  # down the face
    centre = (lm[0] + lm[1]) / 2
    nose = float((lm[2] - centre) @ v) / d
    mouth = float(((lm[3] + lm[4]) / 2 - centre) @ v) / d
    mouth_width = float((lm[4] - lm[3]) @ u) / d
    return 0.0 < nose < mouth + 0.2 and 0.4 <= mouth <= 3.0 and 0.25 <= mouth_width <= 1.6


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(ix * iy / max(area, 1e-9))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / max(union, 1e-9))


def plausible_faces(
    found: Sequence[Detection],  # one frame's detections, source pixels
    frame_size: tuple[int, int],  # (width, height) of the source frame
    *,
    max_fraction: float = 0.8,
    confirm_below: float = 0.5,
    second_opinion: Callable[[], Sequence[Detection]] | None = None,  # the other detector, same frame
    refusals: Refusals | None = None,
    duplicate_overlap: float = 0.6,
) -> list[Detection]:
    """The detections of one frame that can be faces (see the module docstring), best first."""
    refusals = refusals if refusals is not None else Refusals()
    kept: list[Detection] = []
    for det in sorted(found, key=lambda d: -d.score):
        if not size_ok(det.box, frame_size, max_fraction):
            refusals.note("size", det)
        elif not layout_ok(det.box, det.landmarks):
            refusals.note("layout", det)
        elif any(_overlap_of_smaller(det.box, k.box) > duplicate_overlap for k in kept):
            refusals.note("duplicate", det)
        else:
            kept.append(det)
    doubtful = [d for d in kept if d.score < confirm_below]
    if not doubtful:
        return kept
    others = list(second_opinion()) if second_opinion is not None else []
    out = []
    for det in kept:
        if det.score >= confirm_below:
            out.append(det)
        elif any(iou(det.box, o.box) >= 0.3 for o in others):
            refusals.confirmed += 1
            out.append(det)
        else:
            refusals.note("unconfirmed", det)
    return out
