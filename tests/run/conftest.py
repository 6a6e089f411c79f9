"""Fixtures shared by the end-to-end restore tests (in-process and Ray): one small face clip and one
tiny seeded generator, made once per module."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.faces.synthetic import render, standard_shots, write_video
from pipeline.prior.load import RANDOM_SOURCE_PREFIX


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 frames, 160×90, two shots with two and then one moving face (3 tracks), gray and grainy,
    with an audio track."""
    shots = [
        replace(
            s,
            length=n,
            placements=tuple(
                replace(
                    p,
                    scale=(p.scale[0] * 2, p.scale[1] * 2),
                    start=(p.start[0] * 0.8, p.start[1] * 0.6),
                    end=(p.end[0] * 0.8, p.end[1] * 0.6),
                )
                for p in s.placements
            ),
        )
        for s, n in zip(standard_shots()[:2], (8, 8), strict=True)
    ]
    return write_video(render(shots, factor=8, seed=3).frames, tmp_path_factory.mktemp("faces") / "faces.mkv")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-px seeded random generator, labelled as a test generator (not a face model)."""
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator

    G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_generator(
        G, path, source=f"{RANDOM_SOURCE_PREFIX}: seed 0, 16 px (test generator, not a face model)"
    )
