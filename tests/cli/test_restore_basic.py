"""`reel restore` end to end on generated clips: nothing a user cares about is lost.

Every round trip asserts exactly: frame count, every output timestamp against the input's (within
the coarser time base's rounding), audio packets byte for byte, colour tags, aspect and size.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.io.probe import probe
from tests.media import (
    MediaCache,
    assert_same_times,
    read_audio_packets,
    read_chapters,
    read_subtitle_texts,
    read_video_tags,
    read_video_times,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def restore(src: Path, out: Path, *extra: str) -> int:
    # The in-process path (decode → upscale → encode → mux); the Ray executor has its own tests.
    return main(["restore", str(src), "-o", str(out), "--executor", "local", *extra])


CASES: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    # name: (clip spec, output suffix, extra CLI arguments)
    "cfr25-flac": (dict(frames=25, audio=1), ".mkv", ["--scale", "2"]),
    "ntsc-two-aac": (dict(rate="30000/1001", frames=30, audio=2, container=".mp4"), ".mp4", ["--scale", "2"]),
    "vfr-master": (dict(vfr=True, frames=24, audio=1), ".mkv", ["--scale", "2", "--preset", "master"]),
    "interlaced-tff": (
        dict(interlaced="tff", frames=20, audio=1, container=".mp4"),
        ".mp4",
        ["--scale", "2"],
    ),
    "10bit-422-master": (
        dict(pix_fmt="yuv422p10le", codec="ffv1", frames=12, audio=1),
        ".mkv",
        ["--scale", "2", "--preset", "master"],
    ),
    "odd-size": (dict(size=(65, 49), pix_fmt="yuv444p", frames=12, audio=1), ".mkv", ["--scale", "1"]),
    "rotation": (dict(rotation=90, frames=12, audio=1, container=".mp4"), ".mp4", ["--scale", "2"]),
    "late-start-ts": (dict(frames=15, audio=1, start=10.5, container=".mp4"), ".mp4", ["--scale", "2"]),
    "mpeg2-ts-broadcast": (
        dict(codec="mpeg2video", container=".ts", frames=24, gop=6, bframes=2, audio=1, start=1.4),
        ".mkv",
        ["--scale", "2"],
    ),
    "timecode-mov": (
        dict(frames=15, audio=1, container=".mov", timecode="10:00:00:00", subtitles=True),
        ".mkv",
        ["--scale", "2"],
    ),
    "no-audio-prores": (dict(frames=12), ".mov", ["--scale", "2", "--preset", "mezzanine"]),
    "tags-subtitles": (
        dict(
            frames=25,
            audio=1,
            subtitles=True,
            color=("bt709", "bt709", "bt709", "tv"),
            sar="16/15",
            title="Reel 1",
        ),
        ".mkv",
        ["--scale", "2"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_keeps_frames_times_audio_and_tags(media: MediaCache, tmp_path: Path, name: str) -> None:
    spec, suffix, extra = CASES[name]
    src = media.clip(name, **spec)
    out = tmp_path / f"restored{suffix}"
    assert restore(src, out, *extra) == 0
    # the output, its resolved config and its report (every run writes one), nothing else
    beside = [".config.yaml", ".report.json", ".report.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(out.name + b for b in beside)])

    scale = int(extra[extra.index("--scale") + 1])
    src_times, out_times = read_video_times(src), read_video_times(out)
    assert_same_times(out_times, src_times)

    src_audio, out_audio = read_audio_packets(src), read_audio_packets(out)
    assert len(out_audio) == len(src_audio) == spec.get("audio", 0)
    for a, b in zip(src_audio, out_audio, strict=True):
        assert [data for _, data in b] == [data for _, data in a]  # bit for bit, no re-encode
        assert all(abs(tb - ta) <= 1000 for (ta, _), (tb, _) in zip(a, b, strict=True) if ta is not None)

    src_tags, out_tags = read_video_tags(src), read_video_tags(out)
    assert (out_tags.width, out_tags.height) == (src_tags.width * scale, src_tags.height * scale)
    assert out_tags.sar == src_tags.sar
    assert out_tags.rotation == src_tags.rotation
    assert out_tags.color[:3] == src_tags.color[:3]
    if src_tags.color[3]:
        assert out_tags.color[3] == src_tags.color[3]
    if src_tags.frame_rate and not probe(src, exact=True).video.variable_frame_rate:
        assert out_tags.frame_rate == src_tags.frame_rate
    for key, value in src_tags.metadata.items():
        if key.lower() == "title":
            assert out_tags.metadata.get(key) == value
    if spec.get("subtitles"):
        assert read_subtitle_texts(out) == read_subtitle_texts(src)
    assert read_chapters(out) == read_chapters(src)
    assert out_tags.timecode == src_tags.timecode


def test_ntsc_rate_and_deep_formats_are_exact(media: MediaCache, tmp_path: Path) -> None:
    src = media.clip("ntsc-two-aac", **CASES["ntsc-two-aac"][0])
    out = tmp_path / "ntsc.mp4"
    assert restore(src, out, "--scale", "1") == 0
    assert probe(out).video.frame_rate == Fraction(30000, 1001)

    deep = media.clip("10bit-422-master", **CASES["10bit-422-master"][0])
    master = tmp_path / "master.mkv"
    assert restore(deep, master, "--scale", "1", "--preset", "master") == 0
    info = probe(master)
    assert (info.video.codec, info.video.pix_fmt) == ("ffv1", "yuv422p10le")


def test_vfr_durations_survive(media: MediaCache, tmp_path: Path) -> None:
    src = media.clip("vfr-master", **CASES["vfr-master"][0])
    out = tmp_path / "vfr.mp4"
    assert restore(src, out, "--scale", "1") == 0
    info = probe(out, exact=True)
    assert info.video.variable_frame_rate
    assert_same_times(read_video_times(out), read_video_times(src))


def test_interlaced_input_is_deinterlaced(media: MediaCache, tmp_path: Path) -> None:
    src = media.clip("interlaced-tff", **CASES["interlaced-tff"][0])
    assert probe(src).video.interlaced
    out = tmp_path / "progressive.mp4"
    assert restore(src, out, "--scale", "1") == 0
    assert not probe(out).video.interlaced


# ----------------------------------------------------------------------------- bad inputs


def _truncated_mp4(media: MediaCache, tmp_path: Path) -> Path:
    data = media.clip("ntsc-two-aac", **CASES["ntsc-two-aac"][0]).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    return path


def _truncated_mkv(media: MediaCache, tmp_path: Path) -> Path:
    data = media.clip("long", frames=60, gop=10, audio=1).read_bytes()
    path = tmp_path / "truncated.mkv"
    path.write_bytes(data[: len(data) // 3])  # header intact, most frames gone
    return path


def _audio_only(media: MediaCache, tmp_path: Path) -> Path:
    path = tmp_path / "tone.m4a"
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=0.3", "-c:a", "aac", str(path)]
    subprocess.run(cmd, check=True)
    return path


BAD_INPUTS = {
    "nonexistent": (lambda media, d: d / "missing.mp4", "no such file"),
    "empty": (lambda media, d: _write(d / "empty.mp4", b""), "empty file"),
    "truncated-mp4": (_truncated_mp4, "not a media file"),
    "truncated-mkv": (_truncated_mkv, "truncated"),
    "audio-only": (_audio_only, "no video stream"),
    "random-bytes": (lambda media, d: _write(d / "noise.mov", bytes(range(256)) * 97), "not a media file"),
    "directory": (lambda media, d: _mkdir(d / "folder.mkv"), "is a directory"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gives_clear_error_and_no_output(
    media: MediaCache, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    make, message = BAD_INPUTS[name]
    src = make(media, tmp_path)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "restored.mp4"
    assert restore(src, out, "--scale", "1") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bar output
    assert last.startswith("reel: error: ") and str(src) in last and message in last
    assert list(outdir.iterdir()) == []  # no output, no partial or temporary file


def test_existing_output_needs_overwrite_and_survives_failures(
    media: MediaCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = media.clip("cfr25-flac", **CASES["cfr25-flac"][0])
    out = tmp_path / "restored.mkv"
    out.write_bytes(b"the previous, precious output")

    assert restore(src, out, "--scale", "1") == 2
    assert "already exists" in capsys.readouterr().err

    # Bad input with --overwrite: fails after decoding most of it; the old file stays.
    assert restore(_truncated_mkv(media, tmp_path), out, "--scale", "1", "--overwrite") == 2
    assert "truncated" in capsys.readouterr().err
    # A setting the encoder cannot take.
    assert restore(src, out, "--scale", "1", "--overwrite", "--set", "io.crf=99") == 2
    assert "io.crf" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous, precious output"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    assert restore(src, out, "--scale", "1", "--overwrite") == 0
    assert len(read_video_times(out).pts) == 25


def test_failure_mid_encode_keeps_the_old_output(
    media: MediaCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.config import load_config
    from pipeline.errors import JobError
    from pipeline.frame import compose
    from pipeline.run.restore import restore as restore_video

    src = media.clip("cfr25-flac", **CASES["cfr25-flac"][0])
    out = tmp_path / "restored.mkv"
    out.write_bytes(b"old")
    real = compose.compose_frame

    def crashing(frame, *args, **kwargs):  # type: ignore[no-untyped-def]
        if frame.index == 10:
            raise RuntimeError("face stage crashed")
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(compose, "compose_frame", crashing)
    config = load_config(sets=["run.executor=local", "run.progress=false", "run.max_retries=1"])
    with pytest.raises(JobError, match="face stage crashed"):
        restore_video(src, out, config, overwrite=True)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restored.mkv"]


def test_audio_the_container_cannot_hold_is_refused_before_encoding(
    media: MediaCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = media.clip("cfr25-flac", **CASES["cfr25-flac"][0])  # FLAC audio
    out = tmp_path / "restored.mov"
    assert restore(src, out, "--scale", "1") == 2
    assert "flac" in capsys.readouterr().err
    assert not out.exists()


def test_probe_cli_human_and_json(media: MediaCache, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    src = media.clip("ntsc-two-aac", **CASES["ntsc-two-aac"][0])
    assert main(["probe", str(src)]) == 0
    text = capsys.readouterr().out
    assert "30000/1001" in text and "audio #1" in text and "audio #2" in text
    assert main(["probe", str(src), "--json", "--exact"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["video"]["frame_rate"] == "30000/1001"
    assert data["video"]["frame_count"] == 30 and len(data["frame_pts"]) == 30
    assert [a["language"] for a in data["audio"]] == ["eng", "fra"]
    assert main(["probe", str(src.with_name("nope.mp4"))]) == 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "setting",
    ["io.deinterlace=maybe", "upscale.method=magic", "upscale.scale=0", "io.preset=h266", "io.crf=70"],
)
def test_bad_settings_fail_before_any_work(
    media: MediaCache, tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str
) -> None:
    src = media.clip("cfr25-flac", **CASES["cfr25-flac"][0])
    out = tmp_path / "restored.mkv"
    assert restore(src, out, "--set", setting) == 2
    assert setting.split("=")[0] in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_telecined_cartoon_is_restored_at_film_rate(media: MediaCache, tmp_path: Path) -> None:
    src = media.clip("telecine", telecine=True, rate="30000/1001", frames=30, audio=1)
    out = tmp_path / "film.mkv"
    assert restore(src, out, "--scale", "1", "--set", "io.inverse_telecine=true") == 0
    info = probe(out, exact=True)
    assert info.video.frame_count == 24
    assert info.video.frame_rate == Fraction(24000, 1001)
    assert [d for _, d in read_audio_packets(out)[0]] == [d for _, d in read_audio_packets(src)[0]]


def test_combed_source_flagged_progressive_gets_a_hint(
    media: MediaCache, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    spec = dict(source="mandelbrot", interlaced="tff", interlace_flags=False, size=(192, 128))
    src = media.clip("careless", **spec)
    assert main(["probe", str(src), "--exact"]) == 0
    assert "look interlaced (top field first)" in capsys.readouterr().out
    assert restore(src, tmp_path / "out.mkv", "--scale", "1") == 0
    assert any("--set io.deinterlace=on" in r.getMessage() for r in caplog.records)


def test_unwritable_outputs_are_refused_up_front(
    media: MediaCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = media.clip("cfr25-flac", **CASES["cfr25-flac"][0])
    assert restore(src, tmp_path / "no" / "such" / "dir.mkv") == 2
    assert "does not exist" in capsys.readouterr().err
    assert restore(src, tmp_path / "out.avi") == 2
    assert "unsupported container" in capsys.readouterr().err
    assert restore(src, tmp_path / "prores.mp4", "--preset", "mezzanine") == 2
    assert "cannot be written to .mp4" in capsys.readouterr().err
    assert restore(src, src, "--overwrite") == 2  # never decode and overwrite the same file
    assert "is the input file" in capsys.readouterr().err
    assert src.exists() and list(tmp_path.iterdir()) == []


def test_aac_priming_into_matroska_shifts_every_stream_by_the_same_amount(
    media: MediaCache, tmp_path: Path
) -> None:
    """The stated rule (docs/guide.md, pipeline.io.mux): MP4 keeps the source's timestamps exactly; Matroska
    cannot hold the negative start of AAC priming, so every stream moves by that same amount and sync
    is the source's to the tick."""
    import av

    def starts(path: Path) -> list[Fraction]:
        with av.open(str(path)) as c:
            first: dict[int, Fraction] = {}
            for packet in c.demux():
                if packet.pts is not None and packet.stream.index not in first:
                    first[packet.stream.index] = packet.pts * Fraction(packet.time_base)
            return [first[s.index] for s in c.streams if s.type in ("video", "audio")]

    src = media.clip("ntsc-two-aac", **CASES["ntsc-two-aac"][0])
    source = starts(src)
    assert min(source) < 0  # the encoder's priming: audio starts before the picture
    shift = -min(source)
    for suffix, expected in ((".mp4", Fraction(0)), (".mkv", shift)):
        out = tmp_path / f"out{suffix}"
        assert restore(src, out, "--scale", "1") == 0
        got = starts(out)
        assert all(abs(g - s - expected) <= Fraction(1, 1000) for g, s in zip(got, source, strict=True)), got
