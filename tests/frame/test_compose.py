"""Paste-back geometry and tone, proven with the identity 'search': paste the true high-res face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.faces.align import crop_to_frame_affine, native_size, rescale_affine, warp_crop
from pipeline.faces.synthetic import Clip, Placement, ShotSpec, render
from pipeline.frame.compose import ComposeSettings, FacePaste, face_mask, paste_faces

R = 256  # "generator" resolution of the identity restoration


@pytest.fixture(scope="module")
def sharp_clip() -> Clip:
    shot = ShotSpec(2, (Placement(0, (300, 120), (310, 125), (1.3, 1.3)),), background_seed=5)
    return render([shot], factor=4, blur=0, grain=0, gray=False, contrast=1.0)


def _identity_paste(
    clip: Clip, shift: float = 0.0, **kw: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output, high-res truth, mask in output) for frame 0 with the true face pasted back."""
    lr, hr = clip.frames[0], clip.hr_frames[0]
    _, _, marks = clip.truth[0][0]
    size = native_size(marks)
    gen_to_out = rescale_affine(crop_to_frame_affine(marks, size), src_scale=R / size, dst_scale=clip.factor)
    truth_face = warp_crop(hr, gen_to_out, R).astype(np.float32) / 255  # the perfect restoration
    up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
    placed = gen_to_out.copy()
    placed[0, 2] += shift
    out = paste_faces(up, [FacePaste(truth_face, placed)], **kw)  # type: ignore[arg-type]
    alpha = paste_faces(
        np.zeros(hr.shape, np.float32),
        [FacePaste(np.ones((R, R, 3), np.float32), gen_to_out)],
        settings=ComposeSettings(tone_match=False),
    )[..., 0]
    return out, hr, alpha


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_identity_restoration_reproduces_the_source_face(sharp_clip: Clip) -> None:
    out, hr, alpha = _identity_paste(sharp_clip)
    core = alpha > 0.99
    assert core.sum() > 5000  # the face square covers a real area
    up = cv2.resize(sharp_clip.frames[0], (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
    pasted, plain = _psnr(out[core], hr[core]), _psnr(up[core], hr[core])
    # Measured here: 41.3 dB pasted vs 29.3 dB for the upscaled frame alone (24.5 dB shifted 2 px).
    assert pasted >= 36.0
    assert pasted >= plain + 8.0
    # Outside the face square the frame is untouched.
    np.testing.assert_array_equal(out[alpha == 0], up[alpha == 0])


def test_misplaced_paste_is_measurably_worse(sharp_clip: Clip) -> None:
    """The geometry test can fail: a 2-pixel error in the affine costs many dB."""
    good, hr, alpha = _identity_paste(sharp_clip)
    bad, _, _ = _identity_paste(sharp_clip, shift=2.0)
    core = alpha > 0.99
    assert _psnr(good[core], hr[core]) >= _psnr(bad[core], hr[core]) + 6.0


def test_tone_matching_follows_the_frame(sharp_clip: Clip) -> None:
    lr, hr = sharp_clip.frames[0], sharp_clip.hr_frames[0]
    _, _, marks = sharp_clip.truth[0][0]
    size = native_size(marks)
    to_out = rescale_affine(crop_to_frame_affine(marks, size), src_scale=R / size, dst_scale=4)
    face = warp_crop(hr, to_out, R).astype(np.float32) / 255
    too_bright = np.clip(face + 0.15, 0, 1)
    up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
    matched = paste_faces(up, [FacePaste(too_bright, to_out)])
    raw = paste_faces(up, [FacePaste(too_bright, to_out)], settings=ComposeSettings(tone_match=False))
    alpha = paste_faces(
        np.zeros(hr.shape, np.float32),
        [FacePaste(np.ones((R, R, 3), np.float32), to_out)],
        settings=ComposeSettings(tone_match=False),
    )
    core = alpha[..., 0] > 0.99
    bias = lambda img: float(np.mean(img[core].astype(np.float64) - hr[core]))  # noqa: E731
    assert abs(bias(raw)) > 25  # the brightened face, pasted as is
    assert abs(bias(matched)) < 3  # tone-matched back to the footage


def test_black_and_white_stays_black_and_white() -> None:
    rng = np.random.default_rng(0)
    frame = np.repeat(rng.integers(0, 256, (120, 160, 1), dtype=np.uint8), 3, axis=2)
    colourful = rng.random((64, 64, 3)).astype(np.float32)
    to_out = np.array([[1.0, 0.0, 40.0], [0.0, 1.0, 20.0]])
    out = paste_faces(frame, [FacePaste(colourful, to_out)], gray=True)
    assert out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert not np.array_equal(out, frame)


def test_mask_is_feathered_and_symmetric() -> None:
    m = face_mask(128, 0.12, 0.04)
    assert m[64, 64] == 1.0 and m[0, 0] == 0.0 and m[64, 0] == 0.0
    np.testing.assert_allclose(m, m[::-1, ::-1])
    profile = m[64, :64]
    assert np.all(np.diff(profile) >= 0) and 0 < profile[10] < 1  # a soft, monotone edge
    with pytest.raises(ValueError):
        m[0, 0] = 1.0  # shared between calls: read-only


@pytest.mark.parametrize("up", [2, 4])
def test_grain_is_matched_on_smooth_faces(up: int) -> None:
    """Strength and size: the fine (1 px) and the band (up to 8 px) energy both match the footage."""
    rng = np.random.default_rng(2)
    lr = np.clip(0.5 + rng.normal(0, 0.06, (80, 80)), 0, 1).astype(np.float32)
    frame = np.repeat(cv2.resize(lr, (80 * up, 80 * up), interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)
    smooth = np.full((64, 64, 3), 0.5, np.float32)
    k = up / 2
    to_out = np.array([[1.5 * k, 0.0, 32.0 * k], [0.0, 1.5 * k, 32.0 * k]])
    core = (slice(round(50 * k), round(110 * k)),) * 2

    def grain(img: np.ndarray, sigma: float) -> float:
        g = img[..., 0].astype(np.float32)
        return float((g - cv2.GaussianBlur(g, (0, 0), sigma))[core].std())

    plain = paste_faces(frame, [FacePaste(smooth, to_out)], settings=ComposeSettings(grain_match=False))
    matched = paste_faces(frame, [FacePaste(smooth, to_out)])
    assert grain(plain, 1.0) < 0.2 * grain(frame, 1.0)  # without it: a clean patch in grainy footage
    assert 0.8 < grain(matched, 1.0) / grain(frame, 1.0) < 1.25
    assert 0.75 < grain(matched, 8.0) / grain(frame, 8.0) < 1.3
    np.testing.assert_array_equal(matched, paste_faces(frame, [FacePaste(smooth, to_out)]))  # deterministic
