"""Paste-back geometry and tone, proven with the identity 'search': paste the true high-res face."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from pipeline.affine import rescale_affine
from pipeline.faces.align import crop_to_frame_affine, native_size, warp_crop
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


# ----------------------------------------------------------------------------- compose_frame: the guarantee


def _frame_and_placement(
    resolution: int, track_id: int = 0, frame_index: int = 0, scale: float = 1.3
) -> tuple[np.ndarray, list[object], np.ndarray]:
    """A grainy gray 160x90 frame of the astronaut and a WRONG restoration of her face (a bright
    noise square the search could not make agree: search PSNR 18 dB, bound missed)."""
    from pipeline.frame.compose import FacePlacement
    from pipeline.types import FaceRestoration

    shot = ShotSpec(1, (Placement(0, (260, 60), (260, 60), (scale, scale)),), background_seed=5)
    clip = render([shot], size=(640, 360), factor=4, grain=0.04, gray=True)
    frame = clip.frames[0]
    _, box, marks = clip.truth[0][0]
    size = native_size(marks)
    rng = np.random.default_rng(track_id)
    face = np.repeat(rng.random((resolution, resolution, 1)).astype(np.float32), 3, axis=2)
    r = FaceRestoration(track_id, frame_index, np.zeros((2, 4), np.float32), face, 18.0, False, 10)
    return frame, [FacePlacement(r, crop_to_frame_affine(marks, size), size)], box


def test_compose_frame_meets_the_bound_in_frame_after_paste_and_grain() -> None:
    from pipeline.config import Config
    from pipeline.frame.compose import compose_frame
    from pipeline.metrics.faces import frame_consistency

    frame, placements, box = _frame_and_placement(128)
    cfg = Config()
    out, records = compose_frame(frame, None, placements, True, cfg)  # type: ignore[arg-type]
    (rec,) = records
    assert rec["fallback"] is None and rec["projected"] and not rec["search_met_bound"]
    assert rec["missed_by_db"] == pytest.approx(
        rec["bound_db"] - 18.0, abs=1e-3
    )  # the report says by how much
    assert rec["met_bound_in_frame"] and rec["psnr_in_frame_db"] >= rec["bound_db"]
    assert rec["psnr_before_projection_db"] < rec["bound_db"]  # pasted as is, it contradicted the film
    # Recomputed from the output pixels alone: downscaled, the face region is the footage.
    assert frame_consistency(out, frame, box) >= rec["bound_db"] + 5
    unprojected, _ = compose_frame(
        frame,
        None,
        placements,
        True,
        replace(cfg, compose=replace(cfg.compose, project=False)),  # type: ignore[arg-type]
    )
    assert frame_consistency(unprojected, frame, box) < rec["bound_db"]  # the check can fail


def test_compose_frame_changes_nothing_outside_the_faces() -> None:
    from pipeline.config import Config
    from pipeline.frame.compose import compose_frame
    from pipeline.frame.upscale import upscale

    frame, placements, _ = _frame_and_placement(128)
    out, _ = compose_frame(frame, None, placements, True, Config())  # type: ignore[arg-type]
    plain = upscale(frame, 2)
    p = placements[0]
    to_out = rescale_affine(p.crop_to_frame, src_scale=128 / p.crop_size, dst_scale=2)  # type: ignore[attr-defined]
    square = paste_faces(
        np.zeros(plain.shape, np.float32),
        [FacePaste(np.ones((128, 128, 3), np.float32), to_out)],
        settings=ComposeSettings(tone_match=False, grain_match=False, margin=0.0, feather=1e-6),
    )[..., 0]
    changed = np.abs(out.astype(int) - plain.astype(int)).max(axis=2) > 0
    assert changed.sum() > 500  # the face changed
    assert not (changed & (square == 0)).any()  # ... and nothing outside its aligned square (× scale)
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() == 0  # black and white stays so


def test_faces_the_prior_cannot_serve_fall_back_to_the_consistent_upscale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pipeline.config import Config
    from pipeline.frame.compose import compose_frame
    from pipeline.frame.upscale import upscale
    from pipeline.metrics.faces import frame_consistency

    frame, placements, box = _frame_and_placement(16)  # a 16-px generator for an ~80 px output face
    import pipeline.frame.compose as compose

    compose._told.clear()
    caplog.set_level("WARNING")
    out, (rec,) = compose_frame(frame, None, placements, True, Config())  # type: ignore[arg-type]
    compose_frame(frame, None, placements, True, Config())  # type: ignore[arg-type]
    p = placements[0]  # the next frame, the face a little larger: the same reason, not said again
    compose_frame(frame, None, [replace(p, crop_size=p.crop_size + 2)], True, Config())  # type: ignore[type-var]
    assert rec["fallback"] and "generator" in rec["fallback"] and rec["met_bound_in_frame"]
    assert sum("falls back" in r.message for r in caplog.records) == 1  # said once, not per frame
    plain = upscale(frame, 2)
    assert frame_consistency(out, frame, box) >= frame_consistency(plain, frame, box)
    b = (box * 2).astype(int)
    assert _psnr(out[b[1] : b[3], b[0] : b[2]], plain[b[1] : b[3], b[0] : b[2]]) > 30  # no blur pasted


def test_grain_is_seeded_per_track_not_per_frame() -> None:
    from pipeline.config import Config
    from pipeline.frame.compose import FacePlacement, compose_frame

    frame, placements, _ = _frame_and_placement(128)
    p = placements[0]
    r = p.restoration  # type: ignore[attr-defined]
    smooth = np.full_like(r.image, 0.5)  # a smooth face: it gets grain

    def with_(track: int, index: int) -> np.ndarray:
        face = replace(r, image=smooth, track_id=track, frame_index=index)
        return compose_frame(
            frame, None, [FacePlacement(face, p.crop_to_frame, p.crop_size)], True, Config()
        )[0]  # type: ignore[attr-defined]

    np.testing.assert_array_equal(with_(3, 0), with_(3, 7))  # the same grain along the track
    assert not np.array_equal(with_(3, 0), with_(4, 0))  # another track, another pattern


def test_steadiness_is_recorded_per_face_frame_along_a_track() -> None:
    from pipeline.config import Config
    from pipeline.frame.compose import FacePlacement, Steadiness, compose_frame
    from pipeline.metrics.faces import track_steadiness

    frame, placements, _ = _frame_and_placement(128)
    p = placements[0]
    r = p.restoration  # type: ignore[attr-defined]
    rng = np.random.default_rng(5)
    steady, records = Steadiness(), []
    for t in range(3):
        grainy = np.clip(frame.astype(int) + rng.integers(-6, 7, frame.shape[:2])[..., None], 0, 255).astype(
            np.uint8
        )
        face = FacePlacement(replace(r, frame_index=t), p.crop_to_frame, p.crop_size)  # type: ignore[attr-defined]
        records += compose_frame(grainy, None, [face], True, Config(), steadiness=steady)[1]
    assert "change_out" not in records[0] and all(
        "change_out" in x and "change_src" in x for x in records[1:]
    )
    ratio = track_steadiness(records)[0]
    assert 0.5 < ratio < 1.3  # the same face on changing grain: the output moves about as the film does
