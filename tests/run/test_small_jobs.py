"""The default executor ("auto"): a small job runs in-process (no Ray start-up), a larger one on Ray,
started once for the run."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.run.restore import restore
from tests.media import MediaCache, read_video_times


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def _executor(out: Path) -> str:
    return str(json.loads(out.with_name(out.name + ".report.json").read_text())["executor"])


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def test_a_three_second_clip_runs_in_process_under_the_default_executor(
    media: MediaCache, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = media.clip(size=(160, 90), rate="25", frames=75, source="testsrc2")
    assert not _ray_running()
    cfg = load_config(sets=["run.progress=false"])
    assert cfg.run.executor == "auto"
    out = tmp_path / "out.mkv"
    with caplog.at_level(logging.INFO, logger="pipeline.run.restore"):
        restore(src, out, cfg)
    said = [r.getMessage() for r in caplog.records if "small job" in r.getMessage()]
    assert len(said) == 1 and "75 frames of 160x90" in said[0] and "in-process" in said[0]
    assert _executor(out) == "local" and not _ray_running()
    assert len(read_video_times(out).pts) == 75


def test_a_job_above_the_size_starts_ray_once(
    media: MediaCache, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("ray")
    src = media.clip(size=(160, 90), rate="25", frames=75, source="testsrc2")
    assert not _ray_running()
    sets = ["run.progress=false", "run.in_process_megapixels=0.5", "run.num_cpus=2", "run.segment_frames=25"]
    out = tmp_path / "out.mkv"
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        restore(src, out, load_config(sets=sets))
    starts = [r for r in caplog.records if r.getMessage().startswith("Ray embedded")]
    assert len(starts) == 1, [r.getMessage() for r in starts]
    assert not any("small job" in r.getMessage() for r in caplog.records)
    assert _executor(out) == "ray" and not _ray_running()  # started for the run, stopped after it
    assert len(read_video_times(out).pts) == 75


def test_a_simple_transcode_runs_in_process_as_one_part_whatever_its_size(
    media: MediaCache, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--scale 1 without faces or film cleaning copies the frames through the encoder: in-process, one
    part encoded on every core (as plain ffmpeg would), however long the clip."""
    src = media.clip(size=(160, 90), rate="25", frames=75, source="testsrc2")
    sets = ["run.progress=false", "run.in_process_megapixels=0", "upscale.scale=1", "run.segment_frames=25"]
    out = tmp_path / "out.mkv"
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        restore(src, out, load_config(sets=sets))
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("simple job") and "75 frames" in m for m in messages), messages
    assert not any(m.startswith("Ray embedded") for m in messages)
    assert _executor(out) == "local" and not _ray_running()
    assert len(read_video_times(out).pts) == 75
    resolved = out.with_name(out.name + ".config.yaml").read_text()
    assert "segment_frames: 75" in resolved and "encoder_threads: 0" in resolved
