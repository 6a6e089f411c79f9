"""probe: exact rates, counts, timestamps, colour, aspect, rotation, interlacing, streams; bad inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from pipeline.errors import VideoOpenError
from pipeline.io.probe import probe
from tests.media import MediaCache, read_video_times


def test_ntsc_rate_count_and_two_audio_streams(media: MediaCache) -> None:
    path = media.clip("ntsc", rate="30000/1001", frames=30, audio=2, container=".mp4")
    info = probe(path, exact=True)
    v = info.video
    assert v.frame_rate == Fraction(30000, 1001)
    assert v.frame_count == 30
    assert not v.variable_frame_rate
    assert info.frame_pts == tuple(read_video_times(path).pts)
    assert v.time_base * (info.frame_pts[1] - info.frame_pts[0]) == Fraction(1001, 30000)
    assert [a.codec for a in info.audio] == ["aac", "aac"]
    assert [a.language for a in info.audio] == ["eng", "fra"]
    assert info.audio[0].sample_rate == 48000
    assert v.interlaced is False and v.field_order == "progressive"


def test_vfr_is_detected_and_timestamps_listed(media: MediaCache) -> None:
    path = media.clip("vfr", vfr=True, frames=20)
    info = probe(path, exact=True)
    assert info.video.variable_frame_rate
    assert info.frame_pts == tuple(read_video_times(path).pts)
    assert info.video.frame_count == 20


def test_colour_aspect_subtitles_and_title(media: MediaCache) -> None:
    path = media.clip(
        "tagged",
        subtitles=True,
        audio=1,
        color=("bt709", "bt709", "bt709", "tv"),
        sar="16/15",
        title="Reel 1",
    )
    info = probe(path)
    v = info.video
    assert (v.color.primaries, v.color.transfer, v.color.matrix, v.color.range) == ("bt709",) * 3 + ("tv",)
    assert v.sample_aspect_ratio == Fraction(16, 15)
    assert v.display_aspect_ratio == Fraction(64, 48) * Fraction(16, 15)
    assert [s.codec for s in info.subtitles] == ["subrip"] or [s.codec for s in info.subtitles] == ["srt"]
    assert info.metadata.get("title") == "Reel 1"


def test_rotation_depth_and_interlacing(media: MediaCache) -> None:
    rot = probe(media.clip("rot", rotation=90, container=".mp4"))
    assert rot.video.rotation == 90
    deep = probe(media.clip("p10", pix_fmt="yuv422p10le", codec="ffv1", frames=5))
    assert (deep.video.pix_fmt, deep.video.bit_depth) == ("yuv422p10le", 10)
    tff = probe(media.clip("tff", interlaced="tff", frames=10))
    assert tff.video.interlaced
    assert tff.video.field_order in ("tt", "tb")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.mp4", b""), "empty file"),
        (lambda d: _write(d / "noise.mkv", bytes(range(256)) * 64), "not a media file"),
    ],
    ids=["nonexistent", "directory", "empty", "random-bytes"],
)
def test_bad_inputs_name_the_file_and_the_problem(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    with pytest.raises(VideoOpenError) as err:
        probe(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "tone.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=0.3", "-c:a", "aac", str(path)], check=True
    )
    with pytest.raises(VideoOpenError, match="has no video stream"):
        probe(path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_combing_in_frames_flagged_progressive_is_found_and_fixed_on_request(media: MediaCache) -> None:
    import numpy as np

    from pipeline.io.decode import open_video
    from pipeline.io.probe import detect_interlacing

    # mandelbrot, not testsrc2: idet calls testsrc2's sharp moving shapes combed even when progressive.
    spec = dict(source="mandelbrot", frames=24, size=(192, 128))
    careless = media.clip("unflagged", interlaced="bff", interlace_flags=False, **spec)
    assert not probe(careless).video.interlaced  # the flags say progressive...
    assert detect_interlacing(careless) == "bb"  # ...the pictures say otherwise
    assert detect_interlacing(media.clip("progressive", **spec)) is None

    woven = list(open_video(careless, deinterlace="auto").reader())  # auto trusts the flags: untouched
    fixed = list(open_video(careless, deinterlace="on").reader())
    assert [f.pts for f in fixed] == [f.pts for f in woven]

    def comb(img: np.ndarray) -> float:
        x = img.astype(np.float32)
        return float(np.abs(x[1:-1] - (x[:-2] + x[2:]) / 2).mean())

    assert comb(fixed[12].image) < 0.7 * comb(woven[12].image)
