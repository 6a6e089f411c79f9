"""Decoding: every frame with its exact pts, stable indices from any start, reduced copies, depth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.errors import DecodeError
from pipeline.io.decode import open_video
from tests.media import MediaCache, read_video_times


@pytest.mark.parametrize(
    "spec",
    [
        dict(rate="30000/1001", frames=30, container=".mp4", bframes=3, gop=7),
        dict(vfr=True, frames=24, gop=5),
        dict(codec="mpeg2video", container=".ts", frames=30, gop=6, bframes=2, audio=1, start=1.4),
    ],
    ids=["ntsc-bframes-mp4", "vfr-mkv", "mpeg2-open-gop-ts"],
)
def test_indices_are_stable_whatever_the_start(media: MediaCache, spec: dict) -> None:  # type: ignore[type-arg]
    path = media.clip("seek", **spec)
    with open_video(path).reader() as reader:
        full = list(reader)
    ref = read_video_times(path)
    assert [f.pts for f in full] == ref.pts
    assert [f.index for f in full] == list(range(len(ref.pts)))
    assert reader.stats.decoded == len(ref.pts) and reader.stats.damaged == 0
    for start, end in [(1, 4), (6, 9), (13, 20), (len(full) - 3, None)]:
        part = list(open_video(path).reader(start, end))
        stop = len(full) if end is None else end
        assert [f.index for f in part] == list(range(start, stop))
        for f in part:
            assert f.pts == full[f.index].pts and f.time == full[f.index].time
            np.testing.assert_array_equal(f.image, full[f.index].image)


def test_one_opened_video_reads_its_index_once_and_its_readers_agree(
    media: MediaCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`open_video` indexes the file once; every reader and `pictures` of it name the same picture by
    the same index (a VFR clip with B-frames: indices from the pts, not from a rate)."""
    import pipeline.io.decode as decode

    path = media.clip("seek", vfr=True, frames=24, gop=5)
    calls: list[object] = []
    real = decode.frame_index
    monkeypatch.setattr(decode, "frame_index", lambda p: calls.append(p) or real(p))
    video = open_video(path, deinterlace="off")
    with video.reader() as reader:
        full = list(reader)
    tail = list(video.reader(17, 21))
    picked = video.pictures([2, 19, 500])
    assert len(calls) == 1  # one index for the video, not one per reader
    assert video.frames == len(full) == 24 and [f.pts for f in full] == list(video.pts)
    assert [f.index for f in tail] == [17, 18, 19, 20]
    for f in tail:
        np.testing.assert_array_equal(f.image, full[f.index].image)
    assert sorted(picked) == [2, 19]  # 500 is past the end: left out
    np.testing.assert_array_equal(picked[19], full[19].image)


def test_reduced_copy_and_dtypes(media: MediaCache) -> None:
    frames8 = list(open_video(media.clip("cfr", size=(96, 64), frames=3)).reader(max_size=48))
    assert frames8[0].image.shape == (32, 48, 3) and frames8[0].image.dtype == np.uint8
    frames10 = list(open_video(media.clip("p10", pix_fmt="yuv422p10le", codec="ffv1", frames=5)).reader())
    assert frames10[0].image.dtype == np.uint16 and frames10[0].image.shape == (48, 64, 3)
    # Ten-bit detail survives: values are not just 8-bit codes shifted up.
    assert np.any(frames10[0].image % 256 != frames10[0].image[..., :1] % 256)


def test_empty_range_and_bad_range(media: MediaCache) -> None:
    path = media.clip("cfr", frames=10)
    assert list(open_video(path).reader(10)) == []
    with pytest.raises(ValueError):
        open_video(path).reader(5, 2)


def test_deinterlace_keeps_count_and_timestamps(media: MediaCache) -> None:
    path = media.clip("tff", interlaced="tff", frames=10)
    woven = list(open_video(path, deinterlace="off").reader())
    smooth = list(open_video(path, deinterlace="auto").reader())
    assert [f.pts for f in smooth] == [f.pts for f in woven] == read_video_times(path).pts

    # Combing: neighbouring lines from different instants differ far more than after bwdif.
    def comb(img: np.ndarray) -> float:
        x = img.astype(np.float32)
        return float(np.abs(x[1:-1] - (x[:-2] + x[2:]) / 2).mean())

    assert comb(smooth[5].image) < 0.7 * comb(woven[5].image)


def test_inverse_telecine_restores_film_rate(media: MediaCache) -> None:
    path = media.clip("telecine", telecine=True, rate="30000/1001", frames=30)
    reader = open_video(path, inverse_telecine=True).reader()
    frames = list(reader)
    assert len(frames) == 24
    times = [f.time for f in frames]
    steps = {round(float(b - a) * 24000 / 1001, 3) for a, b in itertools.pairwise(times)}
    assert steps == {1.0}
    with pytest.raises(ValueError):
        open_video(path, inverse_telecine=True).reader(3)


def test_truncated_file_is_unusable_unless_tolerated(media: MediaCache, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = media.clip("long", frames=60, size=(64, 48), gop=10)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DecodeError, match="truncated"):
        list(open_video(cut).reader())
    reader = open_video(cut, max_damaged_fraction=1.0).reader()
    frames = list(reader)
    assert 0 < len(frames) < 60
    assert reader.stats.decoded == len(frames)
    assert len(frames) + reader.stats.bad - reader.stats.damaged == pytest.approx(60, abs=2)


def test_damage_in_the_middle_is_counted_not_fatal(media: MediaCache, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = media.clip("damaged", frames=40, size=(64, 48), gop=5)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(7)
    middle = len(data) // 2
    data[middle : middle + 600] = rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.mkv"
    bad.write_bytes(bytes(data))
    reader = open_video(bad).reader()
    frames = list(reader)
    stats = reader.stats
    assert stats.bad > 0  # the hole is reported...
    assert len(frames) >= 20  # ...everything around it still decodes...
    assert len(frames) + stats.lost + stats.missing == 40  # ...and the count adds up
    assert [f.index for f in frames] == sorted({f.index for f in frames})  # no index reused


def test_memory_stays_bounded_whatever_the_length(media: MediaCache) -> None:
    import tracemalloc

    path = media.clip("long-bounded", frames=240, size=(160, 120), gop=30)
    frame_bytes = 160 * 120 * 3
    tracemalloc.start()
    try:
        count = 0
        for frame in open_video(path).reader():
            count += 1
            del frame
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 240
    assert peak < 24 * frame_bytes  # a handful of frames in flight, never the whole clip (240)
