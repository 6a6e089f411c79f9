"""Clips shared by the face tests (rendered once per session: they are deterministic)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.faces.synthetic import Clip, render, standard_shots


@pytest.fixture(scope="session")
def clip_x4() -> Clip:
    """Three shots, two faces at once, ×4 downscale, blurred, grainy, gray, low contrast (320×180)."""
    return render(standard_shots(), factor=4)


@pytest.fixture(scope="session")
def clip_x8() -> Clip:
    """The same story with larger faces, ×8 downscale (160×90): faces about 25–35 px tall."""
    shots = [
        replace(
            s,
            placements=tuple(
                replace(
                    p,
                    start=(p.start[0] * 0.8, p.start[1] * 0.7),
                    end=(p.end[0] * 0.8, p.end[1] * 0.7),
                    scale=(p.scale[0] * 2, p.scale[1] * 2),
                )
                for p in s.placements
            ),
        )
        for s in standard_shots()
    ]
    return render(shots, factor=8, seed=1)
