"""Image sequences and RGB/deep sources: found, read at the given rate, written back at full depth."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError, VideoOpenError
from pipeline.io import sequence
from pipeline.io.presets import chroma_label, format_depth, get_preset, is_rgb_format, output_pix_fmt
from pipeline.io.writer import output_color
from pipeline.types import ColorTags
from tests.media import FFMPEG


def _frames(directory: Path, suffix: str, pix_fmt: str, n: int = 6, start: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pattern = directory / f"scan_%06d{suffix}"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=24", "-frames:v", str(n),
         "-pix_fmt", pix_fmt, "-start_number", str(start), str(pattern)],
        check=True,
    )  # fmt: skip
    return pattern


def test_pattern_and_directory_name_the_same_sequence(tmp_path: Path) -> None:
    pattern = _frames(tmp_path / "s", ".dpx", "rgb48le", start=100)
    by_pattern = sequence.resolve_sequence(pattern)
    by_dir = sequence.resolve_sequence(tmp_path / "s")
    assert by_pattern.start == by_dir.start == 100 and by_pattern.count == by_dir.count == 6
    assert by_dir.pattern.name == "scan_%06d.dpx"
    assert sequence.is_sequence(tmp_path / "s") and sequence.is_sequence_pattern(pattern)


def test_a_missing_frame_is_named(tmp_path: Path) -> None:
    pattern = _frames(tmp_path / "s", ".png", "rgb24")
    (tmp_path / "s" / "scan_000003.png").unlink()
    with pytest.raises(VideoOpenError, match=r"scan_000003\.png is missing"):
        sequence.resolve_sequence(pattern)


def test_sequence_reads_at_the_given_rate_keeping_16_bits(tmp_path: Path) -> None:
    from pipeline.io.decode import open_video
    from pipeline.io.probe import probe

    pattern = _frames(tmp_path / "s", ".tiff", "rgb48le")
    sequence.set_sequence_rate(Fraction(24000, 1001))
    try:
        info = probe(pattern)
        assert info.video.frame_rate == Fraction(24000, 1001)
        assert info.video.frame_count == 6 and info.video.bit_depth == 16
        with open_video(tmp_path / "s").reader() as reader:
            frames = list(reader)
        assert [f.index for f in frames] == list(range(6))
        assert frames[0].image.dtype == np.uint16 and frames[0].image.shape == (32, 48, 3)
        assert frames[1].time == Fraction(1001, 24000)
    finally:
        sequence.set_sequence_rate(sequence.DEFAULT_RATE)


def test_rgb_formats_and_labels() -> None:
    assert is_rgb_format("gbrp16le") and is_rgb_format("bgr0") and is_rgb_format("rgb48le")
    assert not is_rgb_format("yuv420p") and not is_rgb_format("gray16le")
    assert chroma_label("yuv422p10le") == "4:2:2" and chroma_label("gbrp") == "RGB"
    assert (
        format_depth("yuv422p10le") == 10 and format_depth("rgb48le") == 16 and format_depth("yuv420p") == 8
    )


@pytest.mark.parametrize(
    ("preset", "source", "deep", "stored"),
    [
        ("master-ffv1", "gbrp10le", True, "gbrp10le"),  # RGB kept as RGB at its depth
        ("master-ffv1", "bgr0", False, "gbrp"),
        ("master-ffv1", "yuv422p10le", True, "yuv422p10le"),
        ("master-rgb", "gbrp16le", True, "gbrp16le"),
        ("master-rgb", "yuv420p", False, "gbrp"),
        ("sequence-dpx", "gbrp12le", True, "rgb48le"),
        ("sequence-tiff", "yuv420p", False, "rgb24"),
        ("delivery-x264", "gbrp16le", True, "yuv420p"),
    ],
)
def test_stored_pixel_format(preset: str, source: str, deep: bool, stored: str) -> None:
    assert output_pix_fmt(get_preset(preset), source, deep, 64, 48) == stored


def test_rgb_to_yuv_needs_a_known_matrix_and_is_tagged_with_it() -> None:
    rgb = ColorTags(primaries="bt709", matrix="gbr", range="pc")
    assert output_color(rgb, "gbrp", "yuv420p", "bt709").matrix == "bt709"
    assert output_color(rgb, "gbrp", "yuv420p", "bt601").matrix == "smpte170m"
    assert output_color(rgb, "gbrp", "yuv420p", "bt709").range == "tv"
    assert output_color(rgb, "gbrp", "gbrp16le", "bt709") == ColorTags(
        primaries="bt709", matrix="gbr", range="pc"
    )
    yuv = ColorTags(matrix="bt709", range="tv")
    assert output_color(yuv, "yuv420p", "yuv420p", "bt601") == yuv
    with pytest.raises(ConfigError, match=r"io\.rgb_matrix"):
        output_color(rgb, "gbrp", "yuv420p", "xyz")


def test_existing_outputs_of_a_pattern(tmp_path: Path) -> None:
    for n in (0, 1, 2):
        (tmp_path / f"out_{n:06d}.dpx").write_bytes(b"x")
    (tmp_path / "out_notes.dpx").write_bytes(b"x")
    found = sequence.existing_outputs(tmp_path / "out_%06d.dpx")
    assert [p.name for p in found] == ["out_000000.dpx", "out_000001.dpx", "out_000002.dpx"]
    assert sequence.is_sequence_output(tmp_path / "out_%06d.tiff")
    assert not sequence.is_sequence_output(tmp_path / "out.mkv")
