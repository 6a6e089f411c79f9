"""Film cleaning and the cartoon rules through a whole restore (in-process executor, no face prior)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.run.restore import restore
from tests.media import MediaCache, read_video_times


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def test_restore_cleans_frames_in_segments(
    media: MediaCache, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = media.clip(size=(96, 64), frames=20, source="mandelbrot")
    sets = ["run.executor=local", "run.segment_frames=8", "upscale.scale=1", "run.progress=false"]
    cfg = load_config(["newsreel"], sets)
    out = tmp_path / "out.mkv"
    with caplog.at_level(logging.INFO, logger="pipeline.run.join"):
        restore(src, out, cfg)
    assert len(read_video_times(out).pts) == 20
    assert any("film cleaning: frames 20" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.rglob("*.film.json"))  # the segments' figures are merged and removed
    import json

    film = json.loads(out.with_name(out.name + ".report.json").read_text())["film"]
    assert film["frames"] == 20 and film["grain_frames"] == 20  # mandelbrot has no flicker: none removed
    assert "film cleaning" in out.with_name(out.name + ".report.html").read_text()


def test_cartoon_preset_keeps_every_frame_of_a_progressive_source(media: MediaCache, tmp_path: Path) -> None:
    src = media.clip(size=(96, 64), rate="25", frames=40, source="testsrc2")
    cfg = load_config(["cartoon"], ["run.executor=local", "upscale.scale=1", "run.progress=false"])
    out = tmp_path / "cartoon.mkv"
    restore(src, out, cfg)
    assert len(read_video_times(out).pts) == 40
    assert "inverse_telecine: false" in out.with_name(out.name + ".config.yaml").read_text()
