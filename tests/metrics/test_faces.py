"""Face-path measures on pixels: consistency in frame coordinates and steadiness without a reference."""

from __future__ import annotations

import numpy as np

from pipeline.faces.synthetic import Placement, ShotSpec, render
from pipeline.frame.upscale import upscale
from pipeline.metrics.faces import change_ratio, frame_consistency, outside_faces_psnr
from pipeline.types import Track, TrackFrame


def _clip() -> tuple[list[np.ndarray], Track]:
    shot = ShotSpec(6, (Placement(0, (200, 60), (240, 70), (1.2, 1.25)),), background_seed=3)
    clip = render([shot], size=(640, 360), factor=4, seed=2)
    rows = tuple(
        TrackFrame(0, t, clip.truth[t][0][1], clip.truth[t][0][2], 0.9, False)
        for t in range(len(clip.frames))
    )
    return clip.frames, Track(0, 0, rows)


def test_plain_upscale_is_consistent_and_steady_and_noise_is_not() -> None:
    frames, track = _clip()
    plain = {t: upscale(f, 2) for t, f in enumerate(frames)}
    box = track.frames[0].box
    assert frame_consistency(plain[0], frames[0], box) > 30  # the issue: "far above 30" for a plain upscale
    rng = np.random.default_rng(0)
    noisy = {t: np.clip(p + rng.normal(0, 20, p.shape), 0, 255).astype(np.uint8) for t, p in plain.items()}
    assert frame_consistency(noisy[0], frames[0], box) < frame_consistency(plain[0], frames[0], box) - 3
    sources = dict(enumerate(frames))
    steady = change_ratio(plain, sources, track, 2)
    assert 0.5 < steady < 1.2
    assert change_ratio(noisy, sources, track, 2) > 1.3 * steady  # flicker the film does not have
    assert outside_faces_psnr(plain[0], plain[0], [box], 2) == 100.0
    assert outside_faces_psnr(noisy[0], plain[0], [box], 2) < 30
