"""Measurements the report adds from stored artifacts (cheap: no search, no full decode).

- Steadiness of a track: how much the restored face changes from frame to frame, divided by how
  much the footage's face changes (1 = moves as the footage does; much above 1 = flicker the footage
  does not have). Both are compared at one small common size, so crops of varying native size and
  restorations at the generator's resolution are measured alike.
- Consistency in frame coordinates of a sampled face-frame: the output frame's face region,
  downscaled back to the source's size, against the source frame's (PSNR, dB): what the viewer gets,
  after paste-back, tone matching and encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.temporal import frame_changes, psnr
from pipeline.report.assets import to_uint8

_COMMON = 32  # px: side at which source and restored faces are compared over time


@dataclass(frozen=True)
class TrackMotion:
    """Frame-to-frame change of one track's footage face and restored face."""

    frames: list[int]  # frame index of each transition's later frame
    source_change: list[float]  # RMS change (0..1) between consecutive source crops
    output_change: list[float]  # ... between consecutive restored faces
    steadiness: float | None  # mean output change / mean source change (None: fewer than 2 frames)


def _small(image: np.ndarray) -> np.ndarray:
    import cv2

    img = np.asarray(image, np.float32)
    return np.asarray(cv2.resize(img, (_COMMON, _COMMON), interpolation=cv2.INTER_AREA), np.float64)


def track_motion(crops: Mapping[int, np.ndarray], faces: Sequence[tuple[int, np.ndarray]]) -> TrackMotion:
    """Change curves and steadiness of one track: `crops` its footage crops by frame index, `faces`
    its restored faces as (frame index, image) pairs; frames without a crop are left out."""

    pairs = sorted((f, img) for f, img in faces if f in crops)
    if len(pairs) < 2:
        return TrackMotion([], [], [], None)
    src = np.stack([_small(crops[f]) for f, _ in pairs])
    out = np.stack([_small(img) for _, img in pairs])
    ds, do = frame_changes(src), frame_changes(out)
    return TrackMotion(
        [f for f, _ in pairs[1:]],
        [round(float(v), 5) for v in ds],
        [round(float(v), 5) for v in do],
        round(float(do.mean() / max(ds.mean(), 1e-12)), 4),
    )


def frame_consistency(
    source: np.ndarray, output: np.ndarray, box: Sequence[float], margin: float = 0.1
) -> float | None:
    """PSNR (dB) of the output's face region, downscaled to the source's size, against the source's.

    `box`: the face (x0, y0, x1, y1) in source pixels; the output may be any whole multiple of the
    source's size. None when the region is empty.
    """
    import cv2

    sh, sw = source.shape[:2]
    scale = output.shape[1] / sw
    x0, y0, x1, y1 = (float(v) for v in box)
    pad = margin * max(x1 - x0, y1 - y0)
    a, b = max(0, int(np.floor(x0 - pad))), max(0, int(np.floor(y0 - pad)))
    c, d = min(sw, int(np.ceil(x1 + pad))), min(sh, int(np.ceil(y1 + pad)))
    if c <= a or d <= b:
        return None
    src = to_uint8(source)[b:d, a:c].astype(np.float64) / 255.0
    region = to_uint8(output)[round(b * scale) : round(d * scale), round(a * scale) : round(c * scale)]
    if region.size == 0:
        return None
    back = cv2.resize(region, (c - a, d - b), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    return round(psnr(back, src), 3)
