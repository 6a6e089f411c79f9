"""The pieces of anonymise on hand-made inputs: track completion, what the search cannot serve, masks."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.anon.audit import check_anon_config
from pipeline.anon.compose import apply_mask, mask_box
from pipeline.anon.scan import complete_tracks
from pipeline.anon.search import bottleneck_target, unservable
from pipeline.config import AnonConfig, load_config
from pipeline.errors import ConfigError
from pipeline.types import Detection, Shot, Track, TrackFrame

MARKS = np.array([[40, 40], [60, 40], [50, 50], [42, 60], [58, 60]], np.float32)  # a frontal face


def _row(frame: int, dx: float = 0.0) -> TrackFrame:
    box = np.array([30 + dx, 25, 70 + dx, 75], np.float32)
    return TrackFrame(0, frame, box, MARKS + np.float32([dx, 0]), 0.9, False)


def _track(tid: int, frames: range, shot: int = 0, dx: float = 0.0) -> Track:
    return Track(tid, shot, tuple(_row(f, dx + f) for f in frames))


def test_tracks_are_bridged_extended_and_lone_detections_kept() -> None:
    shots = [Shot(0, 0, 30), Shot(1, 30, 40)]
    tracks = [_track(0, range(5, 10)), _track(1, range(16, 22)), _track(2, range(30, 34), shot=1)]
    lone = Detection(36, np.array([150, 20, 190, 70], np.float32), MARKS + np.float32([120, 0]), 0.3)
    anon = AnonConfig(bridge=8, extend=3)
    out, kinds = complete_tracks(shots, tracks, {36: [lone]}, anon, (0, 40))
    spans = sorted((t.shot, t.start, t.end) for t in out)
    # 0 and 1 joined over 6 missed frames, extended by 3 each side; the shot-1 track stops at the cut
    assert (0, 2, 25) in spans
    assert (1, 30, 37) in spans
    assert (1, 33, 40) in spans  # the lone detection became a track, extended inside its shot
    assert sum(k == "bridged" for k in kinds.values()) == 6
    assert sum(k == "stray" for k in kinds.values()) == 1
    for t in out:  # consecutive frames, never across a cut
        frames = [r.frame_index for r in t.frames]
        assert frames == list(range(frames[0], frames[-1] + 1))
        assert all(shots[t.shot].start <= f < shots[t.shot].end for f in frames)


def test_far_apart_tracks_are_not_bridged() -> None:
    shots = [Shot(0, 0, 30)]
    tracks = [_track(0, range(0, 5)), _track(1, range(8, 12), dx=150)]
    out, kinds = complete_tracks(shots, tracks, {}, AnonConfig(bridge=8, extend=0), (0, 30))
    assert len(out) == 2 and "bridged" not in kinds.values()


@pytest.mark.parametrize(
    ("marks", "resolution", "reason"),
    [
        (MARKS, 64, None),
        (MARKS, None, None),  # the generator's resolution unknown: size is checked against it later
        (MARKS * 0.1 + 40, 64, "too small"),
        (MARKS, 8, "too large"),
        (MARKS + np.array([[0, 0], [0, 0], [12, 0], [0, 0], [0, 0]], np.float32), 64, "profile"),
        (MARKS - np.float32([45, 0]), 64, "outside"),
    ],
)
def test_face_frames_the_search_cannot_serve(
    marks: np.ndarray, resolution: int | None, reason: str | None
) -> None:
    row = TrackFrame(0, 0, np.array([30, 25, 70, 75], np.float32), marks.astype(np.float32), 0.9, False)
    assert unservable(row, (200, 120), AnonConfig(), resolution) == reason


def test_bottleneck_keeps_only_a_few_pixels() -> None:
    """All the search sees of a face is its 8x8 block means: detail inside a block (what makes a
    person recognisable) cannot reach the synthetic face."""
    from skimage.data import astronaut

    face = astronaut()[20:250, 120:330].astype(np.float32) / 255.0  # a real face, 230x210
    crop = np.ascontiguousarray(face[:200, :200].reshape(40, 5, 40, 5, 3).mean((1, 3)))  # 40x40
    target = bottleneck_target(crop, 8)
    blocks = crop.reshape(8, 5, 8, 5, 3).mean((1, 3))
    assert target.shape == (8, 8, 3) and target.dtype == np.float32
    np.testing.assert_allclose(target, blocks, atol=1e-5)
    # another face with the same block means and different detail gives the same target
    detail = np.random.default_rng(0).normal(0, 0.2, crop.shape).astype(np.float32)
    detail -= detail.reshape(8, 5, 8, 5, 3).mean((1, 3)).repeat(5, 0).repeat(5, 1)
    assert np.abs(detail).mean() > 0.1
    np.testing.assert_allclose(bottleneck_target(crop + detail, 8), target, atol=1e-5)
    # already that small: passed through as it is
    np.testing.assert_array_equal(bottleneck_target(blocks, 8), blocks)


@pytest.mark.parametrize("fallback", ["blur", "fill"])
def test_masks_cover_more_than_the_face_and_nothing_far_from_it(fallback: str) -> None:
    image = np.random.default_rng(1).random((120, 160, 3)).astype(np.float32)
    before = image.copy()
    box = np.array([60, 40, 90, 80], np.float32)
    grown = mask_box(box, 1.5, 1.0)
    apply_mask(image, grown, AnonConfig(fallback=fallback))
    face = (slice(40, 80), slice(60, 90))
    assert np.abs(image[face] - before[face]).mean() > 0.15  # the face box is gone
    assert np.abs(image[face]).std() < 0.1  # ... and nothing of its texture is left
    assert np.array_equal(image[:, :30], before[:, :30])  # far away: untouched


def test_anon_settings_are_checked() -> None:
    check_anon_config(load_config(["anonymize"]))
    for bad in ("anon.fallback=pixels", "anon.bottleneck=1", "anon.mask_grow=0.5", "anon.extend=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            check_anon_config(load_config(["anonymize"], [bad]))
