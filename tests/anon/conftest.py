"""Clips for the anonymise tests: real photographs composited into two shots (made once per module;
the tiny seeded generator is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.anon.evaluate import AnonClip, anon_clip
from pipeline.faces.synthetic import write_video


@pytest.fixture(scope="module")
def clip() -> AnonClip:
    """2 shots (5 + 4 frames), 256×144, two people each, a bar over one face, one face smeared."""
    return anon_clip(lengths=(5, 4), size=(256, 144), face_height=46, count=4)


@pytest.fixture(scope="module")
def clip_video(clip: AnonClip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(clip.frames, tmp_path_factory.mktemp("anon") / "people.mkv")
