"""Dust, dirt and blotches: specks present in one frame only, filled from its aligned neighbours.

The detector is the classic spike-detection index made motion compensated: a pixel is a speck when
(in any channel) it differs, with the same sign and by more than `threshold`, from both neighbours
after they are warped onto the frame, while those two agree with each other (so the alignment worked there).
Blobs larger than `max_area` are picture (a moving object the flow missed), not dust. A small,
fast object the flow cannot follow looks like a speck to that test, so every candidate is also
looked for in the unaligned neighbours nearby: found in the previous frame at -d and in the next at
about +d (steady motion), it is an object and left alone.
Specks (slightly grown to take their soft rim) are filled with the mean of the aligned neighbours.
"""

from __future__ import annotations

import numpy as np

_SEARCH = 48  # px (at 576 lines; 16 at least): how far a moving object may travel between frames
_MAX_BLOBS = 2000  # candidates examined per frame at most (a frame this dirty is mostly picture)


def _match_map(
    patch: np.ndarray, mask: np.ndarray, padded: np.ndarray, x0: int, y0: int, r: int
) -> np.ndarray:
    """[2r+1, 2r+1] mean squared difference of the masked `patch` placed at (x0, y0) + (dx, dy) in a
    neighbour padded by r (with an impossible value, so no match leaves the picture)."""
    import cv2

    ph, pw = patch.shape[:2]
    area = padded[y0 : y0 + ph + 2 * r, x0 : x0 + pw + 2 * r]
    res = cv2.matchTemplate(area, patch, cv2.TM_SQDIFF, mask=mask)  # [2r+1, 2r+1], index = d + r
    return np.asarray(res) / max(1.0, float(mask.sum()))


def _moving_object(
    patch: np.ndarray,
    mask: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    x0: int,
    y0: int,
    r: int,
    tol: float,
) -> bool:
    """Whether the blob is an object moving at about a steady speed (up to r px a frame, give or take
    some acceleration): found in the previous frame at -d and in the next at about +d, at one
    distinct place. Dust is in one frame only; a plain blob that matches in a whole band of places
    (a white speck by a white wall) is not evidence of an object."""
    import cv2

    slack = max(2, r // 4)
    box = np.ones((2 * slack + 1, 2 * slack + 1), np.uint8)
    ep = _match_map(patch, mask, prev, x0, y0, r)[::-1, ::-1]  # index = -d + r: found at -d
    en = _match_map(patch, mask, nxt, x0, y0, r)
    loose = cv2.erode(ep, box) + en  # steady speed, give or take `slack` px of acceleration
    hits = loose < 2 * tol * tol
    return bool(hits.any()) and int(hits.sum()) <= 2 * box.size


def find_specks(
    image: np.ndarray,  # [H, W, 3] float32 the frame
    prev_w: np.ndarray,  # [H, W, 3] the previous frame warped onto it
    next_w: np.ndarray,  # [H, W, 3] the next frame warped onto it
    prev_raw: np.ndarray,  # [H, W, 3] float32 the previous frame as it is
    next_raw: np.ndarray,  # [H, W, 3] the next frame as it is
    threshold: float,
    max_area: int,
) -> tuple[np.ndarray, int, int]:
    """(mask [H, W] bool of pixels to fill, specks found, candidates kept as moving objects)."""
    import cv2

    dp, dn = image - prev_w, image - next_w  # [H, W, 3]
    agree = np.abs(prev_w - next_w) < threshold
    same = ((dp > threshold) & (dn > threshold)) | ((dp < -threshold) & (dn < -threshold))
    cand = (agree & same).any(axis=2)  # any channel: colour dirt can differ in hue more than brightness
    if not cand.any():
        return np.zeros_like(cand), 0, 0
    scale = image.shape[0] / 576.0
    area_limit = max(150, round(max_area * scale * scale))
    r = max(16, round(_SEARCH * scale))
    prev_pad = np.pad(prev_raw, ((r, r), (r, r), (0, 0)), constant_values=-4.0)
    next_pad = np.pad(next_raw, ((r, r), (r, r), (0, 0)), constant_values=-4.0)
    n, labels, boxes, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    objects = 0
    order = np.argsort(-boxes[1:, cv2.CC_STAT_AREA])[:_MAX_BLOBS] + 1
    for i in order:
        x, yy, w, h, a = boxes[i]
        if a > area_limit:
            continue
        patch = image[yy : yy + h, x : x + w]
        pmask = (labels[yy : yy + h, x : x + w] == i).astype(np.uint8)
        if _moving_object(patch, pmask, prev_pad, next_pad, x, yy, r, threshold / 2):
            objects += 1
            continue
        keep[i] = True
    mask = keep[labels]
    if not mask.any():
        return mask, 0, objects
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return grown, int(keep.sum()), objects
