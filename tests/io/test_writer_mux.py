"""Writing in segments: parts encoded separately and joined equal one encode; failures are clean."""

from __future__ import annotations

import itertools
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import EncodeError, OutputError
from pipeline.io.decode import open_video
from pipeline.io.mux import mux
from pipeline.io.presets import get_preset
from pipeline.io.probe import probe
from pipeline.io.writer import VideoWriter
from tests.media import MediaCache, assert_same_times, read_audio_packets, read_video_times


def _encode_range(src: Path, part: Path, start: int, end: int | None, preset: str = "delivery-x264") -> Path:
    info = probe(src)
    reader = open_video(src).reader(start, end)
    v = info.video
    with VideoWriter(
        part,
        width=v.width,
        height=v.height,
        time_base=reader.time_base,
        frame_rate=v.frame_rate,
        preset=preset,
    ) as writer:
        for frame in reader:
            writer.write(frame.image, frame.pts)
    return part


@pytest.mark.parametrize(
    "spec",
    [
        dict(rate="30000/1001", frames=30, audio=2, container=".mp4", bframes=3),
        dict(vfr=True, frames=24, audio=1),
    ],
    ids=["ntsc-bframes", "vfr"],
)
def test_joined_parts_equal_one_encode(media: MediaCache, tmp_path: Path, spec: dict) -> None:  # type: ignore[type-arg]
    src = media.clip("segments", **spec)
    n = len(read_video_times(src).pts)
    bounds = [0, 7, 8, 19, n]  # uneven parts, one of a single frame
    ranges = list(itertools.pairwise(bounds))
    parts = [_encode_range(src, tmp_path / f"p{i}.mov", a, b) for i, (a, b) in enumerate(ranges)]
    whole = _encode_range(src, tmp_path / "whole.mov", 0, None)
    suffix = ".mp4" if spec.get("container") == ".mp4" else ".mkv"
    joined = mux(parts, src, tmp_path / f"joined{suffix}")
    single = mux([whole], src, tmp_path / f"single{suffix}")

    ref = read_video_times(src)
    assert_same_times(read_video_times(joined), ref)
    assert read_video_times(joined).pts == read_video_times(single).pts
    assert read_audio_packets(joined) == read_audio_packets(single)
    assert [d for _, d in read_audio_packets(joined)[0]] == [d for _, d in read_audio_packets(src)[0]]
    # Every frame decodes: the join did not break a reference chain.
    assert len(list(open_video(joined).reader())) == n


def test_writer_reports_ffmpegs_own_error_and_leaves_nothing(tmp_path: Path) -> None:
    broken = replace(get_preset("delivery-x264"), options={"preset": "no-such-speed"})
    part = tmp_path / "part.mov"
    writer = VideoWriter(part, width=32, height=32, time_base=Fraction(1, 25), preset=broken)
    with pytest.raises(EncodeError) as err, writer:
        for i in range(200):  # ffmpeg refuses at the first frame; the pipe breaks on a later one
            writer.write(np.zeros((32, 32, 3), np.uint8), i)
    assert "ffmpeg said" in str(err.value) and "no-such-speed" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_writer_checks_frames_and_timestamps(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "p.mov", width=16, height=8, time_base=Fraction(1, 1000)) as writer:
        writer.write(np.zeros((8, 16, 3), np.uint8), 0)
        with pytest.raises(ValueError, match="increase"):
            writer.write(np.zeros((8, 16, 3), np.uint8), 0)
        with pytest.raises(ValueError, match="does not match"):
            writer.write(np.zeros((8, 16, 3), np.uint16), 40)
        writer.write(np.full((8, 16, 3), 200, np.uint8), 77)
    assert read_video_times(tmp_path / "p.mov").times == [Fraction(0), Fraction(77, 1000)]


def test_mux_refuses_to_overwrite_and_unknown_containers(media: MediaCache, tmp_path: Path) -> None:
    src = media.clip("cfr", frames=5)
    part = _encode_range(src, tmp_path / "p.mov", 0, None)
    existing = tmp_path / "out.mkv"
    existing.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        mux([part], src, existing)
    with pytest.raises(OutputError, match="unsupported container"):
        mux([part], src, tmp_path / "out.avi")
    assert existing.read_bytes() == b"keep"


@pytest.mark.timeout(60)
def test_a_chatty_encoder_cannot_stall_the_pipe(tmp_path: Path) -> None:
    # A stand-in for ffmpeg that writes 2 MB to stderr before encoding: far more than a pipe holds.
    # Without the drain thread the encoder would block on stderr and never read its stdin.
    chatty = tmp_path / "ffmpeg-chatty"
    chatty.write_text('#!/bin/sh\nhead -c 2000000 /dev/zero | tr "\\0" "x" >&2\nexec ffmpeg "$@"\n')
    chatty.chmod(0o755)
    part = tmp_path / "p.mov"
    with VideoWriter(part, width=64, height=64, time_base=Fraction(1, 25), ffmpeg=str(chatty)) as writer:
        for i in range(30):
            writer.write(np.full((64, 64, 3), 8 * i, np.uint8), i)
    assert len(read_video_times(part).pts) == 30
