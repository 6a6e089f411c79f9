"""FFHQ alignment from 5 landmarks: follows the face under rotation, scale and shift; exact affines."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.affine import rescale_affine, to_cv2_matrix
from pipeline.faces.align import (
    alignment_jitter,
    crop_to_frame_affine,
    ffhq_quad,
    native_size,
    warp_crop,
)

# An upright face: eyes 40 px apart, mouth 44 px below the eyes.
FACE = np.array([[80, 100], [120, 100], [100, 122], [84, 144], [116, 144]], np.float64)


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_upright_face_gives_an_axis_aligned_square() -> None:
    c, x, y = ffhq_quad(FACE)
    assert x[1] == pytest.approx(0) and y[0] == pytest.approx(0)  # no tilt
    # Half-side = max(2 * eye distance, 1.8 * eye-to-mouth) = max(80, 79.2); centre 1/10 towards the mouth.
    assert x[0] == pytest.approx(80) and y[1] == pytest.approx(80)
    np.testing.assert_allclose(c, [100, 100 + 4.4])
    assert native_size(FACE) == 160


@pytest.mark.parametrize(("angle", "scale"), [(0.3, 1.0), (-0.5, 0.25), (1.2, 2.5)])
def test_quad_follows_similarity_transforms(angle: float, scale: float) -> None:
    m = _similarity(angle, scale, (13.0, -7.0))
    moved = FACE @ m[:, :2].T + m[:, 2]
    c0, x0, y0 = ffhq_quad(FACE)
    c1, x1, y1 = ffhq_quad(moved)
    np.testing.assert_allclose(c1, m[:, :2] @ c0 + m[:, 2], atol=1e-9)
    np.testing.assert_allclose(x1, m[:, :2] @ x0, atol=1e-9)
    np.testing.assert_allclose(y1, m[:, :2] @ y0, atol=1e-9)
    assert abs(native_size(moved) - 160 * scale) <= 0.5


def test_crop_affine_maps_crop_corners_to_the_quad() -> None:
    size = native_size(FACE)
    a = crop_to_frame_affine(FACE, size)
    c, x, y = ffhq_quad(FACE)
    corners = np.array([[0, 0, 1], [size, 0, 1], [size, size, 1], [0, size, 1]], np.float64) @ a.T
    np.testing.assert_allclose(corners, [c - x - y, c + x - y, c + x + y, c - x + y], atol=1e-9)
    # Generator pixels into a 3x upscaled frame: the same square, scaled.
    g = rescale_affine(a, src_scale=1024 / size, dst_scale=3)
    np.testing.assert_allclose(np.array([1024, 1024, 1.0]) @ g.T, 3 * (c + x + y), atol=1e-9)


def test_warp_crop_samples_at_pixel_centres() -> None:
    """A crop placed by a pure integer shift reproduces the image exactly (no half-pixel drift)."""
    rng = np.random.default_rng(0)
    image = rng.random((60, 80, 3)).astype(np.float32)
    shift = np.array([[1.0, 0.0, 17.0], [0.0, 1.0, 9.0]])
    np.testing.assert_allclose(warp_crop(image, shift, 32), image[9:41, 17:49], atol=1e-6)
    m = to_cv2_matrix(rescale_affine(shift, src_scale=2.0))  # half-size pixels: centres move by 0.25
    np.testing.assert_allclose(m[:, 2], [17 - 0.25, 9 - 0.25])


def test_jitter_is_zero_for_steady_motion_and_grows_with_noise() -> None:
    t = np.arange(12, dtype=np.float64)[:, None, None]
    steady = FACE[None] + t * np.array([2.0, -1.0]) + t * 0.01 * (FACE[None] - FACE.mean(0))  # pan + zoom
    assert alignment_jitter(steady) < 1e-3
    noisy = steady + np.random.default_rng(1).normal(0, 2.0, steady.shape)
    assert alignment_jitter(noisy) > 10 * alignment_jitter(steady)
