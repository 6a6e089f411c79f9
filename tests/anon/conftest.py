"""Clips for the anonymise tests: real photographs composited into two shots (made once per module)."""

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


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-px seeded random generator, labelled as a test generator (not a face model)."""
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator

    G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_generator(G, path, source="random: seed 0, 16 px (test generator, not a face model)")
