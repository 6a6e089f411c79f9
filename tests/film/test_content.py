"""Cartoons and learned upscalers (pipeline.film.content): the rule for drawn faces, and an
upscaler that cannot load refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import CheckpointError, ConfigError
from pipeline.film.content import face_prior, resolve
from tests.media import MediaCache


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def test_photographic_prior_stays_off_drawn_faces(tmp_path: Path) -> None:
    cartoon = load_config(["cartoon"], ["prior.model=ffhq-1024"])
    assert cartoon.film.content == "drawn" and face_prior(cartoon) is None
    drawn = load_config(
        ["cartoon"], ["prior.model=ffhq-1024", "film.drawn_face_prior=anime-faces.safetensors"]
    )
    assert face_prior(drawn) == "anime-faces.safetensors"
    assert face_prior(load_config(["newsreel"], ["prior.model=ffhq-1024"])) == "ffhq-1024"


def test_a_learned_upscaler_that_cannot_load_fails_before_any_work(media: MediaCache, tmp_path: Path) -> None:
    path = media.clip(size=(64, 48), frames=5)
    with pytest.raises(CheckpointError, match="no such file"):
        resolve(load_config(sets=[f"upscale.model={tmp_path / 'missing.pth'}"]), path)
    with pytest.raises(ConfigError, match="tile"):
        resolve(load_config(sets=["upscale.tile=16", "upscale.tile_overlap=16"]), path)
