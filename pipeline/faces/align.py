"""FFHQ-style face alignment from 5 landmarks, and the affines that carry faces in and out.

The FFHQ dataset was cropped with an oriented square built from the eyes and the mouth: its x
axis runs along the eye line (tilted by the eye-to-mouth direction), its half-side is the larger of
2× the eye distance and 1.8× the eye-to-mouth distance, and its centre sits slightly below the
eyes (a tenth of the way to the mouth). Five-point landmarks carry the same information (eye
centres and mouth corners), so the same square follows from them.

Coordinates here are continuous: pixel (i, j) covers [i, i+1) × [j, j+1), its centre is i + 0.5
(the convention of `pipeline.types`). `crop_to_frame` maps continuous crop coordinates to
continuous frame coordinates; the conversions to OpenCV's integer-centred indices live only here.
"""

from __future__ import annotations

import numpy as np

from pipeline.affine import to_cv2_matrix
from pipeline.types import FaceCrop, TrackFrame


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre c [2] and half-axes x [2] (rightwards), y [2] (downwards) of the aligned square.

    `landmarks`: [5, 2] left eye, right eye, nose, mouth left, mouth right (image left first).
    The square's corners are c - x - y (top left), c + x - y, c + x + y, c - x + y.
    """
    lm = np.asarray(landmarks, np.float64)
    eye_left, eye_right = lm[0], lm[1]
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[3] + lm[4]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    # x: the eye line, corrected by the eye-to-mouth direction turned a quarter turn.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= max(float(np.hypot(*x)), 1e-9)
    x *= max(float(np.hypot(*eye_to_eye)) * 2.0, float(np.hypot(*eye_to_mouth)) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return c, x, y


def native_size(landmarks: np.ndarray) -> int:
    """Side of the aligned square in source pixels, rounded (at least 1)."""
    _, x, _ = ffhq_quad(landmarks)
    return max(1, round(2 * float(np.hypot(*x))))


def crop_to_frame_affine(landmarks: np.ndarray, size: int) -> np.ndarray:
    """[2, 3] affine: continuous pixel of a `size`×`size` aligned crop -> continuous frame pixel."""
    c, x, y = ffhq_quad(landmarks)
    origin = c - x - y
    return np.array(
        [[2 * x[0] / size, 2 * y[0] / size, origin[0]], [2 * x[1] / size, 2 * y[1] / size, origin[1]]],
        np.float64,
    )


def warp_crop(image: np.ndarray, crop_to_frame: np.ndarray, size: int) -> np.ndarray:
    """Sample the `size`×`size` crop that `crop_to_frame` places in `image` ([H, W, C], any dtype).

    When the crop is much smaller than its footprint in the image, the image is first reduced with
    area averaging so the bilinear sampling does not alias.
    """
    import cv2

    affine = np.array(crop_to_frame, np.float64)
    pixel = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # image px per crop px
    src = image
    if pixel > 1.5:
        factor = pixel / 1.2  # leave a little headroom over 1:1 for the bilinear step
        h, w = image.shape[:2]
        nw, nh = max(1, round(w / factor)), max(1, round(h / factor))
        src = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        affine = affine * np.array([[nw / w], [nh / h]])
    m = to_cv2_matrix(affine)
    return np.asarray(
        cv2.warpAffine(
            src,
            m,
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    )


def make_crop(frame: np.ndarray, row: TrackFrame, gray: bool) -> FaceCrop:
    """The low-resolution search target for one track frame, at the face's native size.

    `frame`: [H, W, 3] uint8 RGB (or uint16 for deep sources) at source resolution.
    """
    size = native_size(row.landmarks)
    affine = crop_to_frame_affine(row.landmarks, size)
    crop = warp_crop(frame, affine, size).astype(np.float32)
    crop /= 65535.0 if frame.dtype == np.uint16 else 255.0
    if gray:
        crop[:] = crop.mean(axis=2, keepdims=True)
    return FaceCrop(row.track_id, row.frame_index, np.clip(crop, 0.0, 1.0), affine, gray)


def alignment_jitter(landmarks: np.ndarray) -> float:
    """How much the aligned square shakes along a track: the mean size of its corners' second
    difference (acceleration) in units of the square's side. Steady motion scores 0.

    `landmarks`: [T, 5, 2] for consecutive frames.
    """
    if len(landmarks) < 3:
        return 0.0
    corners = []
    sides = []
    for lm in landmarks:
        c, x, y = ffhq_quad(lm)
        corners.append(np.stack([c - x - y, c + x - y, c + x + y, c - x + y]))  # [4, 2]
        sides.append(2 * np.hypot(*x))
    q = np.stack(corners)  # [T, 4, 2]
    accel = q[2:] - 2 * q[1:-1] + q[:-2]  # [T-2, 4, 2]
    return float(np.mean(np.linalg.norm(accel, axis=-1).mean(-1) / np.asarray(sides[1:-1])))
