"""Only faces are faces, one person one track: real detectors on real photographs and textures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.config import ScanConfig
from pipeline.faces.merge import exclusive_tracks
from pipeline.faces.plausible import layout_ok, plausible_faces, size_ok
from pipeline.faces.scan import scan_frames
from pipeline.faces.synthetic import Clip, Placement, ShotSpec, fabric, occlude, render, texture_clip
from pipeline.metrics.faces import match_tracks
from pipeline.types import Detection, Track, TrackFrame

# The checks this file is about, switched off: what the scan did before them.
UNCHECKED = {
    "confirm_below": 0.0,
    "max_face_fraction": 100.0,
    "merge_gap": 0,
    "merge_overlap": 2.0,
    "max_enlarge": 1e3,
}
MARKS = np.array([[30, 40], [50, 40], [40, 50], [32, 60], [48, 60]], np.float32)  # a frontal face
BOX = np.array([20, 25, 60, 72], np.float32)


def test_layout_and_size_checks() -> None:
    assert layout_ok(BOX, MARKS) and size_ok(BOX, (160, 90), 0.8)
    assert not layout_ok(BOX, MARKS[[3, 4, 2, 0, 1]])  # mouth above the eyes
    assert not layout_ok(BOX, MARKS[[1, 0, 2, 3, 4]])  # eyes swapped
    assert not layout_ok(BOX, MARKS + np.array([60, 0], np.float32))  # landmarks far outside their box
    assert not layout_ok(np.array([0, 0, 200, 200], np.float32), MARKS)  # eyes tiny for the box
    assert not size_ok(np.array([5, -8, 75, 72], np.float32), (88, 72), 0.8)  # the giant box of issue 9


def test_a_small_box_inside_a_big_one_is_one_face_and_doubtful_ones_need_a_second_opinion() -> None:
    big = Detection(0, np.array([10, 10, 70, 80], np.float32), MARKS * 1.4, 0.4)
    small = Detection(0, BOX, MARKS, 0.9)
    assert plausible_faces([big, small], (160, 90), second_opinion=lambda: []) == [small]
    doubtful = Detection(0, BOX, MARKS, 0.4)
    assert plausible_faces([doubtful], (160, 90), second_opinion=lambda: []) == []
    agrees = Detection(0, BOX + 2, MARKS + 2, 0.3)
    assert plausible_faces([doubtful], (160, 90), second_opinion=lambda: [agrees]) == [doubtful]


@pytest.fixture(scope="module")
def textures() -> dict[str, list[np.ndarray]]:
    from skimage import data

    wheel = data.colorwheel()
    return {
        "coffee": texture_clip(data.coffee(), 10, (88, 72), seed=1),
        "colorwheel": texture_clip(wheel[..., :3] if wheel.shape[2] == 4 else wheel, 10, (88, 72), seed=2),
        "cat": texture_clip(data.chelsea(), 10, (160, 90), seed=3),
        "fabric": texture_clip(fabric(), 10, (160, 90), seed=4),
    }


def test_false_giant_boxes_and_face_free_clips_give_no_track(textures: dict[str, list[np.ndarray]]) -> None:
    cfg = ScanConfig()
    for name, frames in textures.items():
        assert scan_frames(enumerate(frames), cfg).tracks == (), name
    # Without the checks, the detector's giant box on the coffee cup becomes a track (issue 9):
    before = scan_frames(enumerate(textures["coffee"]), replace(cfg, **UNCHECKED))
    assert len(before.tracks) >= 1
    box = before.tracks[0].frames[0].box
    assert box[3] - box[1] > 0.8 * 72  # ... a box about as tall as the frame


@pytest.fixture(scope="module")
def talking() -> Clip:
    """One person, 88x72, moving, zooming and rolling, occluded by a bar for 8 frames (> max_gap)."""
    shot = ShotSpec(
        28, (Placement(0, (150, 100), (230, 130), (1.45, 1.65), (-12.0, 12.0)),), background_seed=7
    )
    return occlude(render([shot], size=(704, 576), factor=8, seed=11), range(9, 17), (20, 30, 70, 52))


def test_one_person_is_one_track_across_an_occlusion(talking: Clip) -> None:
    cfg = ScanConfig()
    tracks = scan_frames(enumerate(talking.frames), cfg).tracks
    shots = [0] * len(talking.frames)
    m = match_tracks(tracks, talking.truth, shots)
    assert len(tracks) == 1 and m["tracks_per_person"] == 1 and m["false_tracks"] == 0
    assert m["coverage"] >= 0.9  # the occluded frames are bridged
    split = scan_frames(enumerate(talking.frames), replace(cfg, merge_gap=0)).tracks
    assert len(split) == 2  # without SFace across the gap: two tracks of one person


def _track(tid: int, frames: range, x: float, score: float = 0.9) -> Track:
    rows = tuple(
        TrackFrame(
            tid, f, np.array([x, 10, x + 30, 45], np.float32), MARKS - [20, 25] + [x, 10], score, False
        )
        for f in frames
    )
    return Track(tid, 0, rows)


def test_tracks_are_exclusive_per_frame() -> None:
    # Two tracks on one face region over the same frames: one track.
    tracks, merges = exclusive_tracks([_track(0, range(0, 10), 20), _track(1, range(4, 14), 22)])
    assert len(tracks) == 1 and merges == 1 and [r.frame_index for r in tracks[0].frames] == list(range(14))
    # Two faces far apart: untouched.
    tracks, _ = exclusive_tracks([_track(0, range(0, 10), 0), _track(1, range(0, 10), 100)])
    assert len(tracks) == 2
    # Within every frame, no two tracks claim the same region.
    a, b = _track(0, range(0, 12), 20), _track(1, range(0, 12), 100)
    crossing = Track(
        1, 0, b.frames[:5] + tuple(replace(r, box=a.frames[i].box) for i, r in enumerate(b.frames[5:], 5))
    )
    out, _ = exclusive_tracks([a, crossing], merge_gap=0)
    seen: dict[int, list[np.ndarray]] = {}
    for t in out:
        for r in t.frames:
            for other in seen.get(r.frame_index, []):
                assert not np.allclose(other, r.box)
            seen.setdefault(r.frame_index, []).append(r.box)
