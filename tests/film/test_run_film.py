"""Film cleaning and the cartoon rules through a whole restore (in-process executor, no face prior)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
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


def _write_still(path: Path, picture: np.ndarray, grain: float, frames: int) -> Path:
    """A lossless (FFV1, RGB) still shot of `picture` with fresh grain of `grain` levels per frame."""
    import av
    import cv2

    rng = np.random.default_rng(2)
    with av.open(str(path), "w") as box:
        stream = box.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = picture.shape[1], picture.shape[0], "bgr0"
        for _ in range(frames):
            g = cv2.GaussianBlur(rng.standard_normal(picture.shape[:2]).astype(np.float32), (0, 0), 0.8)
            g *= grain / max(float(g.std()), 1e-6)
            im = np.clip(picture + g[..., None] + 0.5, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return path


def _frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as box:
        return np.stack([f.to_ndarray(format="rgb24") for f in box.decode(video=0)])


def test_regrain_puts_the_source_grain_back_at_output_resolution(tmp_path: Path) -> None:
    """A grainy still shot of a real photograph restored at x2 (lossless master, segments of 5):
    with regrain the output's grain is the source's (strength); with reduce it is mostly gone; the
    segments composed apart equal one segment for the whole clip."""
    import cv2
    import skimage.data

    from pipeline.frame.upscale import upscale

    picture = cv2.resize(skimage.data.camera(), (128, 96), interpolation=cv2.INTER_AREA)
    picture = np.repeat(picture[..., None], 3, axis=2)
    src = _write_still(tmp_path / "grainy.mkv", picture, 6.0, 12)
    source_grain = float(np.std(_frames(src).astype(float) - picture))
    sets = ["run.executor=local", "run.segment_frames=5", "run.progress=false", "io.preset=master-ffv1"]
    grain, outputs = {}, {}
    for mode in ("reduce", "regrain", "regrain-whole"):
        out = tmp_path / f"{mode}.mkv"
        whole = ["run.segment_frames=100"] if mode.endswith("whole") else []
        restore(src, out, load_config(["newsreel"], [*sets, *whole, f"film.grain={mode[:7]}"]))
        outputs[mode] = _frames(out)
        assert outputs[mode].shape == (12, 192, 256, 3)
        grain[mode] = float(np.std(outputs[mode][2:-2].astype(float) - upscale(picture, 2)))
    assert abs(grain["regrain"] / source_grain - 1) < 0.2  # measured here: 5.98 levels -> 5.81
    assert grain["reduce"] < 0.7 * source_grain  # measured here: 3.57
    assert np.array_equal(outputs["regrain"], outputs["regrain-whole"])
