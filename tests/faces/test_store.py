"""Work-directory formats: tracks, crops and restorations survive npz round trips exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.faces import store
from pipeline.faces.scan import ScanResult
from pipeline.files import load_arrays, save_arrays
from pipeline.types import FaceCrop, FaceRestoration, Shot, Track, TrackFrame


def _row(tid: int, f: int, rng: np.random.Generator, interpolated: bool = False) -> TrackFrame:
    box = rng.random(4).astype(np.float32)
    return TrackFrame(
        tid, f, box, rng.random((5, 2)).astype(np.float32), 0.0 if interpolated else 0.9, interpolated
    )


def test_scan_crops_and_restorations_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tracks = (
        Track(3, 0, tuple(_row(3, f, rng, f == 2) for f in range(0, 5))),
        Track(7, 1, tuple(_row(7, f, rng) for f in range(9, 12))),
    )
    scanned = ScanResult(0, 12, (Shot(0, 0, 9), Shot(1, 9, 12)), tracks, 7, True)
    save_arrays(tmp_path / "scan.npz", **store.scan_to_arrays(scanned))
    back = store.scan_from_arrays(load_arrays(tmp_path / "scan.npz"))
    assert (back.start, back.end, back.shots, back.detections, back.gray) == (0, 12, scanned.shots, 7, True)
    assert [(t.track_id, t.shot, t.start, t.end) for t in back.tracks] == [(3, 0, 0, 5), (7, 1, 9, 12)]
    for a, b in zip(tracks, back.tracks, strict=True):
        for x, y in zip(a.frames, b.frames, strict=True):
            np.testing.assert_array_equal(x.landmarks, y.landmarks)
            assert (x.frame_index, x.interpolated, x.score) == (
                y.frame_index,
                y.interpolated,
                np.float32(y.score),
            )

    crops = [
        FaceCrop(3, f, rng.random((s, s, 3)).astype(np.float32), rng.random((2, 3)), False)
        for f, s in ((0, 20), (1, 23))
    ]
    save_arrays(tmp_path / "crops.npz", **store.crops_to_arrays(crops))
    for a, b in zip(crops, store.crops_from_arrays(load_arrays(tmp_path / "crops.npz")), strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.crop_to_frame, b.crop_to_frame)

    faces = [
        FaceRestoration(
            3,
            f,
            rng.random((6, 8)).astype(np.float32),
            rng.random((16, 16, 3)).astype(np.float32),
            31.5,
            True,
            12,
        )
        for f in range(2)
    ]
    save_arrays(tmp_path / "faces.npz", **store.restorations_to_arrays(faces))
    back_faces = store.restorations_from_arrays(load_arrays(tmp_path / "faces.npz"))
    for a, b in zip(faces, back_faces, strict=True):
        np.testing.assert_array_equal(a.latents, b.latents)
        np.testing.assert_allclose(a.image, b.image, atol=1e-3)  # stored as float16
        assert (a.psnr, a.met_bound, a.steps) == (b.psnr, b.met_bound, b.steps)
    assert store.restorations_from_arrays(store.restorations_to_arrays([])) == []
