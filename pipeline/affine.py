"""2x3 affine maps between pixel grids (continuous coordinates, pixel centres at +0.5): scaling
them and handing them to OpenCV. On the ground floor: faces/align builds crops with them and
frame/compose pastes faces back with them."""

from __future__ import annotations

import numpy as np


def rescale_affine(affine: np.ndarray, src_scale: float = 1.0, dst_scale: float = 1.0) -> np.ndarray:
    """Compose an affine with a scaling of its input (src px = in / src_scale) and of its output.

    E.g. generator pixels of resolution R into a frame upscaled by k:
    `rescale_affine(crop_to_frame, src_scale=R / S, dst_scale=k)`.
    """
    out = np.array(affine, np.float64)
    out[:, :2] /= src_scale
    return out * dst_scale


def to_cv2_matrix(affine: np.ndarray) -> np.ndarray:
    """The same map between OpenCV's integer-centred pixel indices: idx_out = M (idx_in) ."""
    m = np.array(affine, np.float64)
    m[:, 2] = m[:, :2] @ np.array([0.5, 0.5]) + m[:, 2] - 0.5
    return m
