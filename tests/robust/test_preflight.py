"""Preflight: what must fail in seconds, before any frame is decoded, and what must be said."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import Config, load_config
from pipeline.errors import CheckpointError, DecodeError, EncodeError, ResourceError, UnsafeCheckpointError
from pipeline.run import lock
from pipeline.run.preflight import check_checkpoint, clean_leftovers, preflight
from tests.media import FFMPEG


def _clip(path: Path, *args: str) -> Path:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args, str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    src = ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2"]
    good = _clip(d / "good.mkv", *src, "-c:v", "libx264", "-g", "10")
    cut = d / "cut.mkv"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 3 // 10])
    return {
        "good": good,
        "cut": cut,
        "prores": _clip(
            d / "prores.mov",
            *src,
            "-f",
            "lavfi",
            "-i",
            "sine=d=2",
            "-c:v",
            "prores_ks",
            "-pix_fmt",
            "yuv422p10le",
            "-c:a",
            "pcm_s16le",
            "-shortest",
        ),
    }


def _run(clip: Path, out: Path, config: Config | None = None) -> None:
    try:
        preflight(clip, out, config or Config(), overwrite=True)
    finally:
        lock.release(out, out.with_name(out.name + ".work"))


def test_pcm_into_mp4_fails_before_any_work_with_the_fix(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(EncodeError, match=r"PCM audio .* cannot go in \.mp4 .*use \.mov or \.mkv"):
        _run(clips["prores"], tmp_path / "o.mp4")


def test_deep_422_to_8_bit_420_warns_naming_the_preset_that_keeps_it(
    clips: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        _run(clips["prores"], tmp_path / "o.mov")
    (warning,) = [r.getMessage() for r in caplog.records if "will be lost" in r.getMessage()]
    assert "10-bit depth and 4:2:2 chroma" in warning and "--preset master" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _run(clips["prores"], tmp_path / "m.mkv", load_config(["master"]))
    assert not [r for r in caplog.records if "will be lost" in r.getMessage()]


def test_scale_100_fails_at_once(clips: dict[str, Path], tmp_path: Path) -> None:
    config = load_config([], ["upscale.scale=400"])
    with pytest.raises(ResourceError, match="scale 256 fits"):
        _run(clips["good"], tmp_path / "o.mkv", config)


def test_a_truncated_file_fails_against_the_declared_count(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match=r"[\d.]+ of the 2 seconds the container declares are missing"):
        _run(clips["cut"], tmp_path / "o.mkv")
    lenient = replace(Config(), io=replace(Config().io, max_damaged_fraction=1.0))
    _run(clips["cut"], tmp_path / "o.mkv", lenient)


def test_a_variable_rate_matroska_file_is_judged_by_its_timestamps(tmp_path: Path) -> None:
    """25 fps for 1 s, then 10 fps for 1 s, two audio streams: Matroska states no frame count, and
    duration x the nominal 50 fps (101) is no count at all (issue 22: it was refused as truncated)."""
    from pipeline.run.restore import restore as restore_video
    from tests.media import assert_same_times, read_audio_packets, read_video_times

    clip = _clip(
        tmp_path / "vfr.mkv",
        *["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1"],
        *["-f", "lavfi", "-i", "sine=d=2", "-f", "lavfi", "-i", "sine=f=300:d=2"],
        *["-filter_complex", "[0:v]settb=1/1000[a];[1:v]settb=1/1000[b];[a][b]concat=n=2:v=1:a=0[v]"],
        *["-map", "[v]", "-map", "2:a", "-map", "3:a", "-c:v", "libx264", "-fps_mode", "passthrough"],
    )
    out = tmp_path / "o.mkv"
    try:
        checked = preflight(clip, out, Config(), overwrite=True)
    finally:
        lock.release(out, out.with_name(out.name + ".work"))
    info = checked.info
    assert (info.video.frame_count, info.video.variable_frame_rate) == (35, True)
    # the count comes from the opened input's index, the one its readers number frames by
    assert checked.source.frames == 35 and checked.source.path == clip
    config = load_config(sets=["run.executor=local", "run.progress=false", "upscale.scale=1"])
    restore_video(clip, out, config, overwrite=True)
    assert_same_times(read_video_times(out), read_video_times(clip))
    assert read_audio_packets(out) == read_audio_packets(clip)


def test_checkpoints_are_checked_without_loading(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator

    good = tmp_path / "g.safetensors"
    save_generator(make_random_generator(16, seed=0), good)
    check_checkpoint(str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="ends early"):
        check_checkpoint(str(cut))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a reel generator"):
        check_checkpoint(str(foreign))
    pt = tmp_path / "g.pt"
    torch.save({"g_ema": {"w": torch.zeros(1000)}}, pt)
    check_checkpoint(str(pt))
    pt.write_bytes(pt.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="not a complete zip"):
        check_checkpoint(str(pt))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.")
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.eval"):
        check_checkpoint(str(evil))
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a known checkpoint format"):
        check_checkpoint(str(text))


def test_leftovers_of_this_output_only_are_removed(tmp_path: Path) -> None:
    names = [
        ".out.mkv.video.mov",
        ".out.mkv.tmp-x",
        ".out.partial.mkv",
        ".out.part0000.mov",
        ".out.partial.mp4",
    ]
    for name in [*names, "keep.mkv"]:
        (tmp_path / name).write_text("x")
    assert clean_leftovers(tmp_path / "out.mkv") == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial.mp4", "keep.mkv"]
