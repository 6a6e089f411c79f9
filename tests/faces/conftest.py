"""Clips shared by the face tests (rendered once per session: they are deterministic)."""

from __future__ import annotations

import pytest

from pipeline.faces.synthetic import Clip, larger_faces, render, standard_shots


@pytest.fixture(scope="session")
def clip_x4() -> Clip:
    """Three shots, two faces at once, ×4 downscale, blurred, grainy, gray, low contrast (320×180)."""
    return render(standard_shots(), factor=4)


@pytest.fixture(scope="session")
def clip_x8() -> Clip:
    """The same story with larger faces, ×8 downscale (160×90): faces about 25–35 px tall."""
    shots = larger_faces(standard_shots(), y=0.7)
    return render(shots, factor=8, seed=1)
